package main

// This file serves profiles in benchproc's own child processes, and
// benchproc builds the gateway and agent binaries with it added to their
// main package (go build -overlay), so that it can profile the real
// processes. A binary built without it has no such listener. It imports
// nothing but the standard library, so that it compiles in any main
// package.

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
)

// init serves profiles and runtime statistics on $TUNNEL_BENCH_PPROF, a
// loopback address chosen by the benchmark, on a mux of its own.
func init() {
	addr := os.Getenv("TUNNEL_BENCH_PPROF")
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		panic("benchmark profiling listener: " + err.Error())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/stats", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		json.NewEncoder(w).Encode(map[string]uint64{
			"goroutines":  uint64(runtime.NumGoroutine()),
			"heap_inuse":  m.HeapInuse,
			"heap_alloc":  m.HeapAlloc,
			"stack_inuse": m.StackInuse,
			"sys":         m.Sys,
		})
	})
	go http.Serve(ln, mux)
}
