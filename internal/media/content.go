package media

import (
	"mime"
	"net/http"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// cspHeader is the spec's recommended Content-Security-Policy for served
// media (the one Synapse sends): even if a browser is led to render a
// download as a document, it runs no script and loads nothing.
const cspHeader = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

// inlineTypes are the only types served with Content-Disposition: inline,
// exactly the spec's list ("Serving inline content", v1.12): types a
// browser displays without running anything. Everything else, HTML and
// SVG above all, is served as an attachment.
//
// PDF is not on the list, and is served as an attachment here too,
// although the brief suggested inline: PDF can carry JavaScript and forms
// run by the browser's viewer, and Matrix clients fetch media themselves
// (an authenticated request, then a blob), so they do not depend on
// inline; the spec tells them not to.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true,
	"application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true,
	"image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true,
	"audio/ogg": true, "audio/wave": true, "audio/wav": true, "audio/x-wav": true,
	"audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// activeTypes are what a browser renders as a document or runs. When a
// client labels such bytes with an inline type (HTML sent as image/png),
// the sniffed type is stored instead, so the download goes out as an
// attachment whatever the label said.
var activeTypes = map[string]bool{
	"text/html": true, "text/xml": true, "application/xml": true,
	"application/xhtml+xml": true, "image/svg+xml": true,
	"application/pdf": true, "application/postscript": true,
	"text/javascript": true, "application/javascript": true,
	"application/x-shockwave-flash": true,
}

// thumbnailTypes are the types the thumbnail endpoint may answer with
// (the spec's enum for its Content-Type).
var thumbnailTypes = map[string]bool{
	"image/jpeg": true, "image/png": true, "image/apng": true, "image/gif": true, "image/webp": true,
}

const octetStream = "application/octet-stream"

// baseType is the lowercased type without parameters ("" if unparsable).
func baseType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return mt
}

// normalizeContentType returns the client's Content-Type re-serialised
// (lowercase type, well-formed parameters), or "" if it does not parse or
// is unreasonably long.
func normalizeContentType(ct string) string {
	if ct == "" || len(ct) > 255 {
		return ""
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(mt, "/") {
		return ""
	}
	return mime.FormatMediaType(mt, params)
}

// decideContentType chooses the stored type from the client's claim and
// http.DetectContentType's verdict on the first 512 bytes:
//   - no claim (or application/octet-stream, the spec's default): the
//     sniffed type, which lets an unlabelled PNG display;
//   - a claim of an inline type over active bytes: the sniffed type;
//   - otherwise the claim. Sniffing knows few formats and calls every
//     text "text/plain", so a disagreement alone (CSV sniffed as text,
//     Ogg audio sniffed as application/ogg) says nothing.
func decideContentType(claimed, sniffed string) string {
	claimed = normalizeContentType(claimed)
	cb, sb := baseType(claimed), baseType(sniffed)
	switch {
	case claimed == "" || cb == octetStream:
		if sb == "" {
			return octetStream
		}
		return sniffed
	case inlineTypes[cb] && activeTypes[sb]:
		return sniffed
	}
	return claimed
}

// disposition is "inline" for the spec's safe types, else "attachment".
func disposition(contentType string) string {
	if inlineTypes[baseType(contentType)] {
		return "inline"
	}
	return "attachment"
}

// contentDisposition builds the header with the filename encoded as RFC
// 6266 asks, as mime.FormatMediaType does: a plain or quoted filename=
// for ASCII names, and for any other name a filename* parameter in the
// RFC 5987 form (the utf-8 charset, then the percent-encoded bytes).
func contentDisposition(disp, filename string) string {
	if filename == "" {
		return disp
	}
	if v := mime.FormatMediaType(disp, map[string]string{"filename": filename}); v != "" {
		return v
	}
	return disp
}

// maxFilenameBytes bounds stored filenames, the usual filesystem limit.
const maxFilenameBytes = 255

// sanitizeFilename keeps what is safe to hand back in a header and to a
// user's file manager:
//   - valid UTF-8 only;
//   - the last path element only (some clients send C:\Users\…\x.pdf);
//   - no control or format characters: format characters include the
//     bidirectional overrides (U+202E) that make "rcod.exe" look like
//     "exe.docr";
//   - no leading or trailing dots and spaces (hidden files, and names
//     Windows cannot create);
//   - at most 255 bytes, shortening the stem so the extension survives.
func sanitizeFilename(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, name)
	name = strings.Trim(name, " .")
	if len(name) <= maxFilenameBytes {
		return name
	}
	ext := path.Ext(name)
	if len(ext) > 16 {
		ext = ""
	}
	stem := truncateUTF8(strings.TrimSuffix(name, ext), maxFilenameBytes-len(ext))
	return strings.Trim(stem, " .") + ext
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// setSafetyHeaders are sent with every piece of served content.
func setSafetyHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", cspHeader)
	// The spec (v1.4) asks for it so web clients that isolate their
	// origin can still load media.
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	// Health documents stay out of browser and proxy caches: hospital
	// workstations are shared, and a cached copy outlives a logout.
	h.Set("Cache-Control", "no-store")
}
