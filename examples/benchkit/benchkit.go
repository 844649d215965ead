// Package benchkit is what the two benchmark commands, examples/bench
// (in one process) and examples/benchproc (between processes), share: the
// origin they measure, so that their numbers are of the same work.
package benchkit

import (
	"fmt"
	"net/http"
)

const (
	// SmallBody is the body of GET /small.
	SmallBody = "hello, world\n"
	// BulkSize is the length of the body of GET /bulk.
	BulkSize = 16 << 20
)

// Handler serves the benchmark's two resources: /small, SmallBody, and
// /bulk, BulkSize bytes with a Content-Length.
func Handler() http.Handler {
	small := []byte(SmallBody)
	bulk := make([]byte, BulkSize)
	for i := range bulk {
		bulk[i] = byte(i)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(small)
	})
	mux.HandleFunc("/bulk", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(bulk)))
		w.Write(bulk)
	})
	return mux
}
