package diag

import (
	"bytes"
	"embed"
	"net/http"
	"path"
	"strings"
	"time"
)

// web is the console: one page, its script, style and icon. Nothing is fetched from
// elsewhere, so it works on a terminal with no internet and under a strict CSP.
//
//go:embed web
var web embed.FS

// staticTypes are the files served under /static/ and their types; anything else is 404.
var staticTypes = map[string]string{
	"app.js":   "text/javascript; charset=utf-8",
	"app.css":  "text/css; charset=utf-8",
	"icon.svg": "image/svg+xml",
}

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	serveFile(w, r, "index.html", "text/html; charset=utf-8")
}

func (s *Server) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	ct, ok := staticTypes[name]
	if !ok {
		writeError(w, &apiError{status: http.StatusNotFound, code: codeNotFound, msg: "no such file"})
		return
	}
	serveFile(w, r, name, ct)
}

func serveFile(w http.ResponseWriter, r *http.Request, name, contentType string) {
	b, err := web.ReadFile(path.Join("web", name))
	if err != nil {
		writeError(w, &apiError{status: http.StatusNotFound, code: codeNotFound, msg: "no such file"})
		return
	}
	w.Header().Set("Content-Type", contentType)
	// No modification time: Cache-Control no-store has the browser fetch them each time.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}
