package media_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/eimis-hub/eimis/internal/clientapi"
	"github.com/eimis-hub/eimis/internal/media"
)

// TestRegisterBesideClientAPI: the hub mounts the media routes on the
// Client-Server API's mux. ServeMux panics on conflicting patterns, so
// this catches a clash (a stub left in clientapi, say) before the hub
// starts; and the media routes must win over clientapi's catch-all.
func TestRegisterBesideClientAPI(t *testing.T) {
	mux := clientapi.New(clientapi.Config{ServerName: "hub.test"}, nil, nil, nil, nil, nil, nil, nil).Handler()
	st, err := media.NewDiskStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	media.New(st, media.Config{ServerName: "hub.test"}, nil).Register(mux, func(*http.Request) (string, error) {
		return "", mautrix.MMissingToken.WithMessage("Missing access token")
	})
	for _, tc := range []struct{ method, path, pattern string }{
		{"GET", "/_matrix/client/v1/media/config", "GET /_matrix/client/v1/media/config"},
		{"GET", "/_matrix/media/v3/config", "GET /_matrix/media/v3/config"},
		{"POST", "/_matrix/media/v3/upload", "POST /_matrix/media/v3/upload"},
		{"GET", "/_matrix/client/v1/media/download/hub.test/abc", "GET /_matrix/client/v1/media/download/{serverName}/{mediaId}"},
		{"GET", "/_matrix/media/v3/download/hub.test/abc", "GET /_matrix/media/v3/download/{serverName}/{mediaId}"},
	} {
		_, pattern := mux.Handler(httptest.NewRequest(tc.method, tc.path, nil))
		if pattern != tc.pattern {
			t.Errorf("%s %s routed to %q, want %q", tc.method, tc.path, pattern, tc.pattern)
		}
	}
}
