package hub_test

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/eimis-hub/eimis/internal/hub/hubtest"
)

// TestMedia: a practitioner sends a PDF report and a wound photo to a
// colleague through the hub, with a real Matrix client (mautrix-go) on
// both ends, as Element would: upload, m.file/m.image event, download by
// the recipient over the authenticated media endpoints. Media does not
// touch the database beyond authentication, so SQLite alone is enough.
func TestMedia(t *testing.T) {
	h := hubtest.Start(t, hubtest.Options{})
	alice := h.NewUser(t, "alice")
	bob := h.NewUser(t, "bob")
	ctx := ctxT(t)

	cfg, err := alice.GetMediaConfig(ctx)
	if err != nil || cfg.UploadSize <= 0 {
		t.Fatalf("media config = %+v, %v", cfg, err)
	}
	// Clients use the authenticated endpoints only if the server says it
	// has them; otherwise Element calls the frozen legacy ones and shows
	// broken images.
	vers, err := alice.Versions(ctx)
	if err != nil || !vers.Supports(mautrix.FeatureAuthenticatedMedia) {
		t.Fatalf("/versions does not advertise authenticated media (v1.11 or org.matrix.msc3916.stable): %+v, %v", vers, err)
	}

	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Suivi plaie", Invite: []id.UserID{bob.UserID}, Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}

	// A PDF report, as an m.file.
	pdf := append([]byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), bytes.Repeat([]byte("compte rendu opératoire\n"), 5000)...)
	up, err := alice.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: pdf, ContentType: "application/pdf", FileName: "CR opératoire.pdf"})
	if err != nil {
		t.Fatalf("upload PDF: %v", err)
	}
	if up.ContentURI.Homeserver != h.Config.ServerName {
		t.Fatalf("content URI %s is not on %s", up.ContentURI, h.Config.ServerName)
	}
	if _, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgFile, Body: "CR opératoire.pdf", FileName: "CR opératoire.pdf", URL: up.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "application/pdf", Size: len(pdf)},
	}); err != nil {
		t.Fatal(err)
	}

	// A photo, as an m.image.
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for x := range 64 {
		img.Set(x, x%48, color.RGBA{R: 180, G: 40, B: 40, A: 255})
	}
	var photo bytes.Buffer
	if err := png.Encode(&photo, img); err != nil {
		t.Fatal(err)
	}
	upImg, err := alice.UploadBytesWithName(ctx, photo.Bytes(), "image/png", "plaie J3.png")
	if err != nil {
		t.Fatalf("upload PNG: %v", err)
	}
	if _, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage, Body: "plaie J3.png", URL: upImg.ContentURI.CUString(),
		Info: &event.FileInfo{MimeType: "image/png", Size: photo.Len(), Width: 64, Height: 48},
	}); err != nil {
		t.Fatal(err)
	}

	// Bob finds both in his timeline and downloads them.
	_, evs := syncUntil(t, bob, "", func(evs []*event.Event) bool { return len(mediaURLs(evs)) == 2 })
	urls := mediaURLs(evs)

	resp, err := bob.Download(ctx, urls["m.file"])
	if err != nil {
		t.Fatalf("download PDF: %v", err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, pdf) {
		t.Fatalf("PDF: %d bytes back, want %d", len(got), len(pdf))
	}
	for k, want := range map[string]string{
		"Content-Type":           "application/pdf",
		"Content-Disposition":    "attachment; filename*=utf-8''CR%20op%C3%A9ratoire.pdf",
		"X-Content-Type-Options": "nosniff",
	} {
		if resp.Header.Get(k) != want {
			t.Errorf("PDF %s = %q, want %q", k, resp.Header.Get(k), want)
		}
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "sandbox;") {
		t.Errorf("PDF Content-Security-Policy = %q", resp.Header.Get("Content-Security-Policy"))
	}

	resp, err = bob.DownloadThumbnail(ctx, urls["m.image"], 32, 32, mautrix.DownloadThumbnailExtra{Method: "crop"})
	if err != nil {
		t.Fatalf("thumbnail: %v", err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, err := png.Decode(bytes.NewReader(got)); err != nil || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("thumbnail: %v, Content-Type %q", err, resp.Header.Get("Content-Type"))
	}

	// Asynchronous upload (mautrix bridges use it): the recipient's
	// download waits for content that arrives after the event.
	mxc, err := alice.CreateMXC(ctx)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	type result struct {
		body []byte
		err  error
	}
	waiting := make(chan result, 1)
	go func() {
		resp, err := bob.DownloadWithParams(ctx, mxc.ContentURI, mautrix.DownloadExtra{Query: map[string]string{"timeout_ms": "20000"}})
		if err != nil {
			waiting <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		waiting <- result{b, err}
	}()
	time.Sleep(100 * time.Millisecond) // the download starts waiting first (passes without it too)
	if _, err := alice.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: mxc.ContentURI, ContentBytes: []byte("ECG 12 dérivations"), ContentType: "text/plain"}); err != nil {
		t.Fatalf("upload to created MXC: %v", err)
	}
	if r := <-waiting; r.err != nil || string(r.body) != "ECG 12 dérivations" {
		t.Fatalf("waiting download: %q, %v", r.body, r.err)
	}
	if _, err := bob.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: mxc.ContentURI, ContentBytes: []byte("x")}); respErr(err) != "M_CANNOT_OVERWRITE_MEDIA" {
		t.Fatalf("overwrite by another user: %v", err)
	}

	// Without a token, nothing: neither the authenticated endpoint nor
	// the legacy one (frozen, as the spec asks since v1.11).
	pdfURI := urls["m.file"]
	for path, want := range map[string]int{
		"/_matrix/client/v1/media/download/" + pdfURI.Homeserver + "/" + pdfURI.FileID: http.StatusUnauthorized,
		"/_matrix/media/v3/download/" + pdfURI.Homeserver + "/" + pdfURI.FileID:        http.StatusNotFound,
	} {
		resp, err := http.Get(h.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without token: %d, want %d", path, resp.StatusCode, want)
		}
	}
	// Other servers' media: no federation yet.
	if _, err := bob.Download(ctx, id.ContentURI{Homeserver: "matrix.org", FileID: pdfURI.FileID}); respErr(err) != "M_NOT_FOUND" {
		t.Errorf("remote media: %v", err)
	}
}

// mediaURLs maps msgtype to the mxc URI of the media events seen.
func mediaURLs(evs []*event.Event) map[string]id.ContentURI {
	out := map[string]id.ContentURI{}
	for _, e := range evs {
		if e.Type != event.EventMessage {
			continue
		}
		mt, _ := e.Content.Raw["msgtype"].(string)
		u, _ := e.Content.Raw["url"].(string)
		if uri, err := id.ParseContentURI(u); err == nil && u != "" {
			out[mt] = uri
		}
	}
	return out
}
