package codes

import (
	"net/http"

	"maunium.net/go/mautrix"
)

// RespError is the Matrix error an HTTP API answers with code: the
// table's status and errcode, msg for people, and the code itself as
// eimis_code for clients and bridges to branch on. A code missing from
// the table answers 403 M_FORBIDDEN (deny when unsure).
func RespError(code, msg string) mautrix.RespError {
	e := mautrix.RespError{ErrCode: mautrix.MForbidden.ErrCode, StatusCode: http.StatusForbidden}
	if i, ok := Lookup(code); ok {
		e = mautrix.RespError{ErrCode: i.Errcode, StatusCode: i.HTTPStatus}
	}
	return e.WithMessage("%s", msg).WithExtraField("eimis_code", code)
}
