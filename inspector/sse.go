package inspector

import (
	"bytes"
	"mime"
	"strings"
	"unicode/utf8"
)

// isEventStream reports whether a Content-Type is text/event-stream.
func isEventStream(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "text/event-stream"
}

// sseParser reads Server-Sent Events off a response body as it is written,
// in pieces of any size (the "event stream" interpretation of the HTML
// Living Standard, section 9.2.6). Lines and data longer than limit are
// cut, so that a stream without line breaks holds no more than that.
type sseParser struct {
	rec   *Recorder
	e     *entry
	limit int

	line      []byte
	lineCut   bool // bytes of the line were dropped
	afterCR   bool // the last byte was a CR: a LF next ends nothing
	typ, id   string
	data      []byte
	hasData   bool
	truncated bool
}

// feed parses p, the next bytes of the stream.
func (s *sseParser) feed(p []byte) {
	for len(p) > 0 {
		if s.afterCR {
			s.afterCR = false
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			s.addToLine(p)
			return
		}
		s.addToLine(p[:i])
		s.afterCR = p[i] == '\r'
		p = p[i+1:]
		s.endLine()
	}
}

func (s *sseParser) addToLine(p []byte) {
	if room := s.limit - len(s.line); len(p) > room {
		p = p[:max(room, 0)]
		s.lineCut = true
	}
	s.line = append(s.line, p...)
}

// endLine processes a complete line.
func (s *sseParser) endLine() {
	line := s.line
	s.line = s.line[:0]
	cut := s.lineCut
	s.lineCut = false
	if len(line) == 0 {
		s.dispatch()
		return
	}
	if line[0] == ':' {
		return // a comment
	}
	field, value, _ := bytes.Cut(line, []byte(":"))
	value = bytes.TrimPrefix(value, []byte(" "))
	switch string(field) {
	case "event":
		s.typ = string(value)
	case "id":
		if !bytes.ContainsRune(value, 0) {
			s.id = string(value)
		}
	case "data":
		s.hasData = true
		s.truncated = s.truncated || cut
		if room := s.limit - len(s.data); len(value)+1 > room {
			value = value[:max(room-1, 0)]
			s.truncated = true
		}
		if len(s.data) < s.limit {
			s.data = append(s.data, value...)
			s.data = append(s.data, '\n')
		}
	}
}

// dispatch ends the event in progress, if it has data.
func (s *sseParser) dispatch() {
	if s.hasData {
		ev := Event{
			Type:      s.typ,
			ID:        s.id,
			Data:      strings.TrimSuffix(string(s.data), "\n"),
			Truncated: s.truncated,
		}
		s.rec.addEvent(s.e, ev)
	}
	// The last event ID persists across events; the rest does not.
	s.typ = ""
	s.data = s.data[:0]
	s.hasData = false
	s.truncated = false
}

// addEvent records ev, cut to what is left of the stream's budget, or
// only counts it once that is spent.
func (r *Recorder) addEvent(e *entry, ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.ex.EventCount++
	if !e.inLog || e.eventBudget < eventOverhead+int64(len(ev.Type)+len(ev.ID)) {
		return
	}
	ev.Time = r.now()
	cost := eventOverhead + int64(len(ev.Type)+len(ev.ID)+len(ev.Data))
	if cost > e.eventBudget {
		ev.Data = strings.Clone(cutUTF8(ev.Data, len(ev.Data)-int(cost-e.eventBudget)))
		ev.Truncated = true
		cost = e.eventBudget
	}
	e.eventBudget -= cost
	r.growLocked(e, cost)
	if !e.inLog {
		return
	}
	e.ex.Events = append(e.ex.Events, ev)
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// end inside a UTF-8 sequence.
func cutUTF8(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
