// Package inspector records the HTTP exchanges that pass through a tunnel
// and serves them to a person (a web page) and to programs (a JSON API and
// Go accessors), with replay.
//
// A Recorder keeps a bounded in-memory log. Its Middleware wraps the
// handler that serves a tunnel's requests (the local service's proxy under
// tunnel.Forward, or a program's own handler under tunnel.Listen) and
// records each exchange as it passes: method, URL, headers, status,
// timings, the first bytes of both bodies, WebSocket frames and
// Server-Sent Events. Bodies stream through; nothing waits for the
// recording. Secret headers are masked before anything is kept.
//
// The Recorder's Handler serves the page and the API, meant for a loopback
// address (the agent serves it on 127.0.0.1:4040). Tests read the same
// records with Exchanges and wait for the next one with Next.
//
//	rec := inspector.New(&inspector.Options{Replay: mux})
//	go http.Serve(tunnelListener, rec.Middleware(mux))
//	go http.ListenAndServe("127.0.0.1:4040", rec.Handler())
//
// See docs/inspector.md for the page, the JSON shapes and the security
// model.
package inspector
