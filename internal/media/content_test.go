package media

import (
	"net/http"
	"strings"
	"testing"
)

func TestDecideContentType(t *testing.T) {
	sniff := func(s string) string { return http.DetectContentType([]byte(s)) }
	png := "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
	for _, tc := range []struct {
		name, claimed, content, want string
	}{
		{"honest PNG", "image/png", png, "image/png"},
		{"honest PDF", "application/pdf", "%PDF-1.7\n", "application/pdf"},
		{"no claim: sniffed", "", png, "image/png"},
		{"octet-stream claim: sniffed", "application/octet-stream", "%PDF-1.7\n", "application/pdf"},
		{"no claim, unknown bytes", "", "\x00\x01\x02\x03", "application/octet-stream"},
		{"HTML claimed as PNG", "image/png", "<html><script>alert(1)</script>", "text/html; charset=utf-8"},
		{"HTML claimed as text", "text/plain", "<!DOCTYPE html><p>x", "text/html; charset=utf-8"},
		{"XML claimed as JPEG", "image/jpeg", "<?xml version='1.0'?><svg/>", "text/xml; charset=utf-8"},
		{"PDF claimed as PNG", "image/png", "%PDF-1.7\n", "application/pdf"},
		// Sniffing only knows a few formats: a plain disagreement is no
		// reason to override the client.
		{"CSV sniffed as text", "text/csv", "a,b\n1,2\n", "text/csv"},
		{"Ogg voice message", "audio/ogg", "OggS\x00\x02", "audio/ogg"},
		{"DOCX sniffed as zip", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "PK\x03\x04", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
		// An HTML claim stays HTML (it is served as an attachment).
		{"HTML claimed", "text/html", "<html>", "text/html"},
		{"claim normalised", "Image/PNG", png, "image/png"},
		{"claim with parameters", "text/plain; charset=UTF-8", "bonjour", "text/plain; charset=UTF-8"},
		{"garbage claim", "not a type", png, "image/png"},
		{"header injection claim", "image/png\r\nX-Evil: 1", png, "image/png"},
		{"empty upload", "", "", "text/plain; charset=utf-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideContentType(tc.claimed, sniff(tc.content)); got != tc.want {
				t.Fatalf("decideContentType(%q, %q) = %q, want %q", tc.claimed, sniff(tc.content), got, tc.want)
			}
		})
	}
}

func TestDisposition(t *testing.T) {
	for _, tc := range []struct{ ct, want string }{
		{"image/png", "inline"},
		{"image/jpeg", "inline"},
		{"text/plain; charset=utf-8", "inline"},
		{"video/mp4", "inline"},
		{"audio/ogg", "inline"},
		{"application/pdf", "attachment"},
		{"text/html; charset=utf-8", "attachment"},
		{"image/svg+xml", "attachment"},
		{"text/xml", "attachment"},
		{"application/javascript", "attachment"},
		{"application/octet-stream", "attachment"},
		{"", "attachment"},
		{"garbage", "attachment"},
	} {
		if got := disposition(tc.ct); got != tc.want {
			t.Errorf("disposition(%q) = %q, want %q", tc.ct, got, tc.want)
		}
	}
}

func TestContentDisposition(t *testing.T) {
	for _, tc := range []struct{ disp, name, want string }{
		{"attachment", "", "attachment"},
		{"inline", "photo.png", "inline; filename=photo.png"},
		{"attachment", "compte rendu.pdf", `attachment; filename="compte rendu.pdf"`},
		{"attachment", `a "quoted" name.pdf`, `attachment; filename="a \"quoted\" name.pdf"`},
		{"attachment", "a;b=c.pdf", `attachment; filename="a;b=c.pdf"`},
		{"attachment", "Hélène – CR.pdf", "attachment; filename*=utf-8''H%C3%A9l%C3%A8ne%20%E2%80%93%20CR.pdf"},
	} {
		if got := contentDisposition(tc.disp, tc.name); got != tc.want {
			t.Errorf("contentDisposition(%q, %q) = %q, want %q", tc.disp, tc.name, got, tc.want)
		}
	}
}

func TestSanitizeFilename(t *testing.T) {
	long := strings.Repeat("é", 200) + ".pdf" // 404 bytes
	for _, tc := range []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"CR opératoire Mme Dupont.pdf", "CR opératoire Mme Dupont.pdf"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\dr\Documents\scan.jpg`, "scan.jpg"},
		{"line\r\nbreak.txt", "linebreak.txt"},
		{"nul\x00byte.txt", "nulbyte.txt"},
		{"invoice\u202Efdp.exe", "invoicefdp.exe"}, // right-to-left override
		{"zero\u200Bwidth.png", "zerowidth.png"},
		{"  .hidden.  ", "hidden"},
		{"...", ""},
		{"", ""},
		{"bad\xffutf8.txt", "bad\uFFFDutf8.txt"},
	} {
		if got := sanitizeFilename(tc.in); got != tc.want {
			t.Errorf("sanitizeFilename(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	got := sanitizeFilename(long)
	if len(got) > maxFilenameBytes || !strings.HasSuffix(got, ".pdf") || !strings.HasPrefix(got, "éé") {
		t.Errorf("long name: %d bytes, %q", len(got), got)
	}
	if !strings.HasSuffix(strings.TrimSuffix(got, ".pdf"), "é") {
		t.Errorf("long name cut inside a character: %q", got)
	}
}
