// Package benchkit is what the two benchmark commands, examples/bench
// (in one process) and examples/benchproc (between processes), share: the
// origin they measure and the Go client that loads it, so that their
// numbers are of the same work.
package benchkit

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
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

// Result is what one run of Load measured.
type Result struct {
	Elapsed   time.Duration
	Requests  int             // answered 200, with the whole body
	Bytes     int64           // body bytes read
	Errors    int             // failed, answered other than 200, or with a body cut short
	Latencies []time.Duration // of the requests counted, unsorted
}

// Load runs conc workers, each with its own keep-alive connection, sending
// GET url back to back for d.
func Load(url string, conc int, d time.Duration) Result {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var stop atomic.Bool
	var mu sync.Mutex
	var res Result
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<14)
			var bytes int64
			var errs int
			buf := make([]byte, 64<<10)
			for !stop.Load() {
				t0 := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					errs++
					continue
				}
				for {
					k, rerr := resp.Body.Read(buf)
					bytes += int64(k)
					if rerr != nil {
						if rerr != io.EOF {
							err = rerr // a body cut short is no answer
						}
						break
					}
				}
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					errs++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.Requests += len(lat)
			res.Bytes += bytes
			res.Errors += errs
			res.Latencies = append(res.Latencies, lat...)
			mu.Unlock()
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}
