package tunnel

import (
	"context"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"strings"

	"github.com/http-tunnel/tunnel/internal/randid"
)

// errorBody is the JSON shape of a public error response.
type errorBody struct {
	Error   Code   `json:"error"`
	Message string `json:"message"`
	ErrorID string `json:"error_id"`
}

// writeError answers a public request with e, and logs it with its cause
// under the same id. Nothing but the code, the public message and the id
// reaches the client: as JSON, or as a small HTML page when html is set
// (the client is a browser, wantsHTML).
func writeError(ctx context.Context, w http.ResponseWriter, html bool, log *slog.Logger, e *Error, attrs ...slog.Attr) {
	if e.ID == "" {
		// e may be a sentinel, or shared with the caller: give this
		// occurrence its own copy and id.
		c := *e
		c.ID = randid.Hex(8)
		e = &c
	}
	status := e.HTTPStatus()
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	if e.Code == CodeInternal {
		level = slog.LevelError
	}
	args := append([]slog.Attr{
		slog.String("error_id", e.ID),
		slog.String("code", string(e.Code)),
		slog.Int("status", status),
	}, attrs...)
	if e.Err != nil {
		args = append(args, slog.String("cause", e.Err.Error()))
	}
	log.LogAttrs(ctx, level, e.Message, args...)

	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(ErrorIDHeader, e.ID)
	if e.Code == CodeUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", `Bearer realm="tunnel"`)
	}
	if html {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		w.WriteHeader(status)
		errorPage.Execute(w, errorPageData{Status: status, StatusText: http.StatusText(status), Code: e.Code, Message: e.Message, ID: e.ID})
		return
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(errorBody{Error: e.Code, Message: e.Message, ErrorID: e.ID})
}

// wantsHTML reports whether the client that sent r asked for HTML rather
// than JSON, as a browser navigating to a page does: its Accept header
// names text/html and does not name application/json. Programs get JSON,
// as do fetch calls (Accept: */*).
func wantsHTML(r *http.Request) bool {
	accept := strings.ToLower(strings.Join(r.Header.Values("Accept"), ","))
	return strings.Contains(accept, "text/html") && !strings.Contains(accept, "application/json")
}

type errorPageData struct {
	Status     int
	StatusText string
	Code       Code
	Message    string
	ID         string
}

// errorPage is the page a browser gets: the same code, message and error
// id as the JSON answer, escaped by html/template.
var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Status}} {{.StatusText}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}code{background:#f3f3f3;padding:.1em .3em;border-radius:3px}p.id{color:#666;font-size:.9em}</style>
</head><body>
<h1>{{.Status}} {{.StatusText}}</h1>
<p>{{.Message}}.</p>
<p class="id">Error <code>{{.Code}}</code>, id <code>{{.ID}}</code>: quote it to the tunnel's operator.</p>
</body></html>
`))
