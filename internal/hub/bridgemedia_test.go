package hub_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/hub/hubtest"
)

// TestBridgeMedia: a vendor's bridge stores a PDF through its socket and a
// larger file over HTTP with its bridge token; a Matrix client downloads
// them. A bridge token acting for a user it does not bind is refused.
func TestBridgeMedia(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{Configure: insecureBinds})
	ctx := ctxT(t)
	tokA, _ := addBridges(t, h)
	app := startApp(t, h.URL, tokA)
	alice := hubtest.Localpart("alice")
	if _, err := app.Bind(ctx, alice); err != nil {
		t.Fatal(err)
	}
	pdf := []byte("%PDF-1.4\n% compte rendu fictif\n%%EOF\n")
	mxc, err := app.Upload(ctx, alice, "application/pdf", "compte-rendu.pdf", pdf)
	if err != nil || !strings.HasPrefix(mxc, "mxc://hub.test/") {
		t.Fatalf("upload through the socket: %q, %v", mxc, err)
	}
	bob := h.NewUser(t, "bob")
	uri, err := id.ParseContentURI(mxc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := bob.DownloadBytes(ctx, uri)
	if err != nil || !bytes.Equal(got, pdf) {
		t.Fatalf("download by a Matrix client: %d bytes, %v", len(got), err)
	}

	upload := func(as string) (int, map[string]any) {
		big := bytes.Repeat([]byte("\x89PNG\r\n\x1a\n"), 200_000) // 1.6 MB: over the socket's frame limit
		req, _ := http.NewRequest("POST", h.URL+"/_matrix/media/v3/upload?filename=scan.png&user_id="+url.QueryEscape(as), bytes.NewReader(big))
		req.Header.Set("Authorization", "Bearer "+tokA)
		req.Header.Set("Content-Type", "image/png")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		b, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	if code, out := upload(string(h.UserID("alice"))); code != 200 || !strings.HasPrefix(out["content_uri"].(string), "mxc://") {
		t.Fatalf("HTTP upload with the bridge token: %d %v", code, out)
	}
	if code, out := upload(string(h.UserID("carol"))); code != 403 || out["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("acting for a user the bridge does not bind: %d %v", code, out)
	}
}
