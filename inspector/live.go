package inspector

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// snapshotJSON is the first event of a live stream, and the event after
// Clear: every kept exchange, newest first.
type snapshotJSON struct {
	Exchanges []summaryJSON `json:"exchanges"`
	FirstID   uint64        `json:"first_id"`
	Replay    bool          `json:"replay"`
}

// evictJSON says that the exchanges before FirstID are gone.
type evictJSON struct {
	FirstID uint64 `json:"first_id"`
}

// serveEvents streams the list as it changes, as Server-Sent Events:
//
//	event: snapshot   data: snapshotJSON   (first, and after a clear)
//	event: exchange   data: summaryJSON    (an exchange began, got its response or ended)
//	event: evict      data: evictJSON      (the oldest exchanges were dropped)
//
// Changes are coalesced: after a burst, each changed exchange is sent
// once, as it is then.
func (r *Recorder) serveEvents(w http.ResponseWriter, req *http.Request) {
	select {
	case r.streams <- struct{}{}:
		defer func() { <-r.streams }()
	default:
		writeError(w, http.StatusServiceUnavailable, "too_many_streams", fmt.Sprintf("at most %d live streams at once", maxStreams))
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, "retry: 1000\n\n"); err != nil {
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	var (
		lastRev, lastFirst uint64
		clears             = ^uint64(0)
	)
	for {
		r.mu.Lock()
		changed := r.changed
		first := r.firstIDLocked()
		var snap *snapshotJSON
		var sums []summaryJSON
		if r.clears != clears {
			clears = r.clears
			snap = &snapshotJSON{Exchanges: make([]summaryJSON, 0, len(r.log)), FirstID: first, Replay: r.opts.Replay != nil}
			for i := len(r.log) - 1; i >= 0; i-- {
				snap.Exchanges = append(snap.Exchanges, summarize(&r.log[i].ex))
			}
		} else {
			for _, e := range r.log {
				if e.rev > lastRev {
					sums = append(sums, summarize(&e.ex))
				}
			}
		}
		lastRev = r.rev
		r.mu.Unlock()

		var err error
		if snap != nil {
			err = writeEvent(w, "snapshot", snap)
		} else if first != lastFirst {
			err = writeEvent(w, "evict", evictJSON{FirstID: first})
		}
		lastFirst = first
		for _, s := range sums {
			if err == nil {
				err = writeEvent(w, "exchange", s)
			}
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}

		select {
		case <-changed:
		case <-tick.C:
			if _, err := io.WriteString(w, ": ping\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-req.Context().Done():
			return
		}
	}
}

// writeEvent writes one Server-Sent Event whose data is v in JSON (one
// line: JSON escapes line breaks in strings).
func writeEvent(w io.Writer, event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
	return err
}
