package psc

import (
	"errors"
	"html/template"
	"net/http"
)

type pageText struct {
	status int
	fr, en string
}

// pageFor picks what the browser sees. Details stay in the logs: the page is
// shown to a user who may be anyone holding the callback URL, and internal
// messages would help an attacker probe the flow.
func pageFor(err error) pageText {
	switch {
	case errors.Is(err, ErrUnknownState):
		return pageText{http.StatusBadRequest,
			"Cette tentative de connexion a expiré ou a déjà été utilisée. Veuillez recommencer.",
			"This login attempt has expired or was already used. Please start again."}
	case errors.Is(err, ErrWrongACR):
		return pageText{http.StatusForbidden,
			"Connexion refusée : utilisez votre carte CPS ou l'application e-CPS.",
			"Login refused: please use your CPS card or the e-CPS app."}
	case errors.Is(err, ErrBadIDNat):
		return pageText{http.StatusForbidden,
			"Votre identité de professionnel de santé n'a pas pu être reconnue.",
			"Your health professional identity could not be recognised."}
	case errors.Is(err, ErrBadNonce), errors.Is(err, ErrInvalidToken):
		return pageText{http.StatusBadRequest,
			"La réponse de Pro Santé Connect n'a pas pu être vérifiée. Veuillez recommencer.",
			"The answer from Pro Santé Connect could not be verified. Please start again."}
	case errors.Is(err, ErrProvider):
		return pageText{http.StatusBadGateway,
			"Pro Santé Connect est momentanément indisponible. Veuillez réessayer plus tard.",
			"Pro Santé Connect is temporarily unavailable. Please try again later."}
	default:
		return pageText{http.StatusInternalServerError,
			"Une erreur est survenue pendant la connexion.",
			"An error occurred during login."}
	}
}

var errorTmpl = template.Must(template.New("error").Parse(`<!DOCTYPE html>
<html lang="fr">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Connexion / Login</title></head>
<body>
<p>{{.FR}}</p>
<p lang="en">{{.EN}}</p>
</body>
</html>
`))

// ErrorPage writes a short bilingual HTML page whose status fits err, for
// the SSO callback to show when Finish fails. It never prints err itself.
func ErrorPage(w http.ResponseWriter, err error) {
	t := pageFor(err)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The page answers a one-off callback: caching it would replay a stale
	// error, and framing it would allow clickjacking of the login flow.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	w.WriteHeader(t.status)
	// A write error only means the browser went away; nothing to report to.
	_ = errorTmpl.Execute(w, struct{ FR, EN string }{t.fr, t.en})
}

// RefusalPage tells a professional whom Pro Santé Connect did authenticate
// why the hub still refuses them (not in the directory, inactive…). The
// reason is the hub's own stable wording about the person themselves, so
// unlike provider errors it is safe and useful to show.
func RefusalPage(w http.ResponseWriter, reason string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	w.WriteHeader(http.StatusForbidden)
	_ = errorTmpl.Execute(w, struct{ FR, EN string }{
		"Connexion refusée par le hub : " + reason,
		"Login refused by the hub: " + reason,
	})
}
