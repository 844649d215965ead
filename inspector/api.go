package inspector

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The JSON shapes of the API, documented in docs/inspector.md. They are
// views of Exchange made for display: bodies come as text, pretty JSON or
// a hex dump, never as the service's own content type.

// summaryJSON is an exchange in a list.
type summaryJSON struct {
	ID           uint64    `json:"id"`
	ReplayOf     uint64    `json:"replay_of,omitempty"`
	Kind         Kind      `json:"kind"`
	Start        time.Time `json:"start"`
	Method       string    `json:"method"`
	URL          string    `json:"url"`
	Host         string    `json:"host"`
	RemoteAddr   string    `json:"remote_addr"`
	Status       int       `json:"status"`
	Done         bool      `json:"done"`
	HeaderMS     float64   `json:"header_ms"`
	DurationMS   float64   `json:"duration_ms"`
	RequestSize  int64     `json:"request_size"`
	ResponseSize int64     `json:"response_size"`
	ContentType  string    `json:"content_type,omitempty"`
	FrameCount   int64     `json:"frame_count,omitempty"`
	EventCount   int64     `json:"event_count,omitempty"`
}

// detailJSON is one exchange with everything kept of it.
type detailJSON struct {
	summaryJSON
	Proto           string      `json:"proto"`
	RequestHeaders  http.Header `json:"request_headers"`
	ResponseHeaders http.Header `json:"response_headers"`
	RequestBody     bodyJSON    `json:"request_body"`
	ResponseBody    bodyJSON    `json:"response_body"`
	Frames          []frameJSON `json:"frames,omitempty"`
	Events          []eventJSON `json:"events,omitempty"`
	// Replay says whether the Recorder can replay at all; Replayable
	// whether POST .../replay without edits would work for this exchange,
	// and ReplayNote why not.
	Replay     bool   `json:"replay"`
	Replayable bool   `json:"replayable"`
	ReplayNote string `json:"replay_note,omitempty"`
}

// bodyJSON is a body made readable.
type bodyJSON struct {
	Size        int64  `json:"size"`
	Kept        int    `json:"kept"`
	Complete    bool   `json:"complete"`
	Truncated   bool   `json:"truncated"`
	ContentType string `json:"content_type,omitempty"`
	// Decoded names the Content-Encoding undone for display ("gzip").
	Decoded string `json:"decoded,omitempty"`
	// Kind is "empty", "json" (Text pretty-printed), "text" or "binary"
	// (Hex holds a dump).
	Kind string `json:"kind"`
	Text string `json:"text,omitempty"`
	Hex  string `json:"hex,omitempty"`
}

// frameJSON is a WebSocket frame.
type frameJSON struct {
	Time       time.Time `json:"time"`
	OffsetMS   float64   `json:"offset_ms"`
	FromClient bool      `json:"from_client"`
	Opcode     string    `json:"opcode"`
	Fin        bool      `json:"fin"`
	Length     int64     `json:"length"`
	Kept       int       `json:"kept"`
	Text       string    `json:"text,omitempty"`
	Hex        string    `json:"hex,omitempty"`
	CloseCode  int       `json:"close_code,omitempty"`
}

// eventJSON is a Server-Sent Event.
type eventJSON struct {
	Time      time.Time `json:"time"`
	OffsetMS  float64   `json:"offset_ms"`
	Type      string    `json:"type"`
	ID        string    `json:"id,omitempty"`
	Data      string    `json:"data"`
	Truncated bool      `json:"truncated,omitempty"`
}

// listJSON is the answer to GET api/exchanges.
type listJSON struct {
	Exchanges []summaryJSON `json:"exchanges"`
	// FirstID is the ID of the oldest exchange kept (of the next one when
	// none is): those before it are gone.
	FirstID uint64    `json:"first_id"`
	Replay  bool      `json:"replay"`
	Stats   statsJSON `json:"stats"`
}

type statsJSON struct {
	Exchanges    int    `json:"exchanges"`
	Bytes        int64  `json:"bytes"`
	Dropped      uint64 `json:"dropped"`
	MaxExchanges int    `json:"max_exchanges"`
	MaxBytes     int64  `json:"max_bytes"`
	MaxBodyBytes int    `json:"max_body_bytes"`
}

// replayJSON is the body of POST api/exchanges/{id}/replay: the edits, all
// optional.
type replayJSON struct {
	Method     string      `json:"method"`
	Path       string      `json:"path"`
	Headers    http.Header `json:"headers"`
	Body       *string     `json:"body"`
	BodyBase64 *string     `json:"body_base64"`
}

// errorJSON is an error answer.
type errorJSON struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func summarize(ex *Exchange) summaryJSON {
	return summaryJSON{
		ID:           ex.ID,
		ReplayOf:     ex.ReplayOf,
		Kind:         ex.Kind,
		Start:        ex.Start,
		Method:       ex.Method,
		URL:          ex.URL,
		Host:         ex.Host,
		RemoteAddr:   ex.RemoteAddr,
		Status:       ex.Status,
		Done:         ex.Done,
		HeaderMS:     ms(ex.HeaderTime),
		DurationMS:   ms(ex.Duration),
		RequestSize:  ex.RequestBody.Size,
		ResponseSize: ex.ResponseBody.Size,
		ContentType:  ex.ResponseHeader.Get("Content-Type"),
		FrameCount:   ex.FrameCount,
		EventCount:   ex.EventCount,
	}
}

// detail makes the detail view of ex, a view the caller owns.
func (r *Recorder) detail(ex *Exchange) detailJSON {
	d := detailJSON{
		summaryJSON:     summarize(ex),
		Proto:           ex.Proto,
		RequestHeaders:  ex.RequestHeader,
		ResponseHeaders: ex.ResponseHeader,
		RequestBody:     viewBody(ex.RequestBody, ex.RequestHeader),
		ResponseBody:    viewBody(ex.ResponseBody, ex.ResponseHeader),
	}
	if d.ResponseHeaders == nil {
		d.ResponseHeaders = http.Header{}
	}
	for _, f := range ex.Frames {
		fj := frameJSON{
			Time:       f.Time,
			OffsetMS:   ms(f.Time.Sub(ex.Start)),
			FromClient: f.FromClient,
			Opcode:     opcodeName(f.Opcode),
			Fin:        f.Fin,
			Length:     f.Length,
			Kept:       len(f.Payload),
		}
		p := f.Payload
		if f.Opcode == 0x8 && len(p) >= 2 {
			fj.CloseCode = int(binary.BigEndian.Uint16(p))
			p = p[2:]
		}
		if text, ok := asText(p, len(f.Payload) < int(f.Length)); ok {
			fj.Text = text
		} else {
			fj.Hex = hex.Dump(p)
		}
		d.Frames = append(d.Frames, fj)
	}
	for _, e := range ex.Events {
		d.Events = append(d.Events, eventJSON{
			Time:      e.Time,
			OffsetMS:  ms(e.Time.Sub(ex.Start)),
			Type:      e.Type,
			ID:        e.ID,
			Data:      e.Data,
			Truncated: e.Truncated,
		})
	}
	d.Replay = r.opts.Replay != nil
	_, err := r.replayRequest(context.Background(), *ex, &Edit{})
	switch {
	case r.opts.Replay == nil:
		d.ReplayNote = "replay is not configured"
	case err != nil:
		d.ReplayNote = strings.TrimPrefix(err.Error(), ErrNotReplayable.Error()+": ")
	default:
		d.Replayable = true
	}
	return d
}

func opcodeName(op byte) string {
	switch op {
	case 0x0:
		return "continuation"
	case 0x1:
		return "text"
	case 0x2:
		return "binary"
	case 0x8:
		return "close"
	case 0x9:
		return "ping"
	case 0xA:
		return "pong"
	}
	return fmt.Sprintf("0x%X", op)
}

// maxDecoded bounds a body decompressed for display.
const maxDecoded = 1 << 20

// viewBody makes b readable: JSON pretty-printed, text as text, anything
// else as a hex dump. A whole gzip body is shown decompressed.
func viewBody(b Body, h http.Header) bodyJSON {
	v := bodyJSON{
		Size:        b.Size,
		Kept:        len(b.Data),
		Complete:    b.Complete,
		Truncated:   b.Truncated(),
		ContentType: h.Get("Content-Type"),
		Kind:        "empty",
	}
	data := b.Data
	if len(data) == 0 {
		return v
	}
	cut := v.Truncated
	if enc := strings.ToLower(h.Get("Content-Encoding")); enc == "gzip" && !cut {
		if zr, err := gzip.NewReader(bytes.NewReader(data)); err == nil {
			if plain, err := io.ReadAll(io.LimitReader(zr, maxDecoded+1)); err == nil {
				data, v.Decoded, cut = plain, "gzip", len(plain) > maxDecoded
				data = data[:min(len(data), maxDecoded)]
			}
		}
	}
	if looksJSON(v.ContentType, data) {
		var out bytes.Buffer
		if json.Indent(&out, data, "", "  ") == nil {
			v.Kind, v.Text = "json", out.String()
			return v
		}
	}
	if text, ok := asText(data, cut); ok {
		v.Kind, v.Text = "text", text
		return v
	}
	v.Kind, v.Hex = "binary", hex.Dump(data)
	return v
}

// looksJSON reports whether a body is meant as JSON: by its type, or, for
// a type that says nothing, by its first byte.
func looksJSON(contentType string, data []byte) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return true
	case mt == "" || mt == "text/plain" || mt == "application/octet-stream":
		t := bytes.TrimLeft(data, " \t\r\n")
		return len(t) > 0 && (t[0] == '{' || t[0] == '[')
	}
	return false
}

// asText returns p as text if it is UTF-8 without control characters
// other than whitespace; cut says p may end inside a character.
func asText(p []byte, cut bool) (string, bool) {
	if cut {
		// Drop a character cut at the end.
		for i := 1; i <= utf8.UTFMax && i <= len(p); i++ {
			if utf8.RuneStart(p[len(p)-i]) {
				if !utf8.FullRune(p[len(p)-i:]) {
					p = p[:len(p)-i]
				}
				break
			}
		}
	}
	if !utf8.Valid(p) {
		return "", false
	}
	for _, c := range p {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return "", false
		}
	}
	return string(p), true
}

// filter selects exchanges by status and path.
type filter struct {
	status []statusMatch
	path   string
}

// statusMatch is "4xx" (class 4) or "404" (code 404).
type statusMatch struct {
	class, code int
}

// parseFilter reads the query parameters status ("2xx", "404", or several
// separated by commas) and path (a substring of the request target).
func parseFilter(q url.Values) (filter, error) {
	f := filter{path: q.Get("path")}
	for tok := range strings.SplitSeq(q.Get("status"), ",") {
		tok = strings.ToLower(strings.TrimSpace(tok))
		if tok == "" {
			continue
		}
		if len(tok) == 3 && strings.HasSuffix(tok, "xx") && tok[0] >= '1' && tok[0] <= '5' {
			f.status = append(f.status, statusMatch{class: int(tok[0] - '0')})
			continue
		}
		code, err := strconv.Atoi(tok)
		if err != nil || code < 100 || code > 599 {
			return filter{}, fmt.Errorf("status %q is neither a class (2xx) nor a code (404)", tok)
		}
		f.status = append(f.status, statusMatch{code: code})
	}
	return f, nil
}

func (f filter) match(ex *Exchange) bool {
	if f.path != "" && !strings.Contains(ex.URL, f.path) {
		return false
	}
	if len(f.status) == 0 {
		return true
	}
	for _, m := range f.status {
		if m.code == ex.Status || m.class != 0 && ex.Status/100 == m.class {
			return true
		}
	}
	return false
}
