// Package tunnel embeds ngrok-style HTTP tunnels in Go programs, and
// provides the gateway that serves them.
//
// An agent calls Listen and gets a net.Listener whose connections are
// public HTTP requests arriving through the gateway:
//
//	ln, err := tunnel.Listen(ctx, "wss://gw.example.com", tunnel.WithToken(tok))
//	if err != nil {
//		return err
//	}
//	fmt.Println(ln.URL()) // https://<id>.gw.example.com
//	srv := &http.Server{Handler: handler}
//	go func() {
//		<-ctx.Done() // say, on SIGTERM
//		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//		defer cancel()
//		srv.Shutdown(stop) // closes ln, lets requests in flight finish
//	}()
//	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
//		return err
//	}
//
// Closing the Listener stops it accepting, as for any net.Listener: the
// gateway routes no new requests to the tunnel and frees its name, while
// the connections already accepted finish; the connection to the gateway
// closes after the last of them (Listener.Close, Listener.CloseWithContext).
//
// Forward does the same for a service that already listens locally:
//
//	fw, err := tunnel.Forward(ctx, "wss://gw.example.com", "http://localhost:3000")
//
// A Listener reconnects by itself, keeping its ID and URL; see Listener.
//
// Server is the gateway, an http.Handler. Its zero value serves: records in
// memory (store.NewMemory), an LRU cache in front, every agent admitted.
// Set an Authenticator (NewStaticTokens, or your own) before exposing it on
// a network, and a shared Store (store/redisstore, store/dynamostore) to run
// several gateway nodes.
//
// For tests, package tunneltest runs a gateway in-process:
//
//	url := tunneltest.Expose(t, handler)
//
// # Errors
//
// Failures carry an *Error with a stable Code; compare with errors.Is
// against the sentinels (ErrTunnelNotFound, ErrNameInUse, ...). Public
// error responses are JSON {"error", "message", "error_id"}, the id also in
// the X-Tunnel-Error-Id header and the gateway's log line.
//
// # Documentation
//
// The docs/ directory of the module has the architecture, the protocol
// (protocol/spec.md is normative), operations, troubleshooting, and the
// configuration, error-code and performance references.
package tunnel
