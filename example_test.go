package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/protocol"
)

// startGateway runs a gateway on loopback for the examples and returns its
// URL and a function that stops it.
func startGateway() (string, func()) {
	gw := &tunnel.Server{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go gw.Serve(l)
	return "http://" + l.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gw.Shutdown(ctx)
		http.DefaultClient.CloseIdleConnections()
	}
}

func ExampleListen() {
	gatewayURL, stop := startGateway()
	defer stop()

	ln, err := tunnel.Listen(context.Background(), gatewayURL, tunnel.WithName("hello"),
		tunnel.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	}))

	fmt.Println("tunnel:", ln.ID())
	resp, err := http.Get(ln.URL() + "/greeting")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(body))
	// Output:
	// tunnel: hello
	// 200 OK hello from /greeting
}

func ExampleForward() {
	gatewayURL, stop := startGateway()
	defer stop()

	// A service that already listens locally.
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "local service: %s %s", r.Method, r.URL.RequestURI())
	}))
	defer local.Close()

	fw, err := tunnel.Forward(context.Background(), gatewayURL, local.URL,
		tunnel.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fw.Close()

	resp, err := http.Get(fw.URL() + "/api?q=1")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: local service: GET /api?q=1
}

func ExampleWithRequestLog() {
	gatewayURL, stop := startGateway()
	defer stop()

	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	defer local.Close()

	logged := make(chan tunnel.RequestLog, 1)
	fw, err := tunnel.Forward(context.Background(), gatewayURL, local.URL,
		tunnel.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		tunnel.WithRequestLog(func(r tunnel.RequestLog) { logged <- r }))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fw.Close()

	resp, err := http.Post(fw.URL()+"/orders?id=7", "text/plain", strings.NewReader("one"))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	r := <-logged
	fmt.Println(r.Method, r.Target, r.Status)
	// Output: POST /orders?id=7 201
}

func ExampleServer() {
	gw := &tunnel.Server{
		BaseURL:       "https://tunnel.example.com", // tunnels get https://<id>.tunnel.example.com
		Authenticator: tunnel.NewStaticTokens(os.Getenv("TUNNEL_TOKEN")),
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go gw.Serve(l)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(gw.Shutdown(ctx))
	// Output: <nil>
}

func ExampleError() {
	_, err := tunnel.Listen(context.Background(), "http://127.0.0.1:1", tunnel.WithName("Not A Label"))
	var te *tunnel.Error
	if errors.As(err, &te) {
		fmt.Println(te.Code, te.HTTPStatus(), errors.Is(err, tunnel.ErrInvalidRequest))
	}
	// Output: invalid_request 400 true
}

// A gateway of another kind (here, one that has already authenticated an
// agent and read its ready message from a transport of its own) admits the
// agent through the same path as the Server's agent endpoint, and sends it
// the answer.
func ExampleServer_Admit() {
	gw := &tunnel.Server{BaseURL: "https://tunnel.example.com"}
	_, answer, err := gw.Admit(context.Background(), tunnel.Admission{
		Identity:     tunnel.Identity{Subject: "alice"},
		Ready:        &protocol.Ready{Version: protocol.Version, Name: "alice-web"},
		ConnectionID: "conn-1",
	})
	if err != nil {
		fmt.Println(err) // send it as a protocol error message
		return
	}
	fmt.Println(answer.TunnelID)
	fmt.Println(answer.PublicURL)
	fmt.Println(answer.PathBasedURL)
	// Output:
	// alice-web
	// https://alice-web.tunnel.example.com
	// https://tunnel.example.com/alice-web
}

// A tunnel stops like any net.Listener under http.Server.Shutdown: no new
// requests arrive, and the ones in flight are answered before the
// connection to the gateway closes.
func ExampleListener_gracefulStop() {
	gatewayURL, stop := startGateway()
	defer stop()

	ln, err := tunnel.Listen(context.Background(), gatewayURL,
		tunnel.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		fmt.Println(err)
		return
	}
	entered := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(50 * time.Millisecond) // a request that takes a while
		fmt.Fprint(w, "finished")
	})}
	go srv.Serve(ln)

	answer := make(chan string)
	go func() {
		resp, err := http.Get(ln.URL() + "/slow")
		if err != nil {
			answer <- err.Error()
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		answer <- resp.Status + " " + string(body)
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The listener first: the gateway routes nothing new here, and what
	// it had routed here is answered. Then the server.
	fmt.Println("close:", ln.CloseWithContext(ctx))
	fmt.Println("shutdown:", srv.Shutdown(ctx))
	fmt.Println(<-answer)
	// Output:
	// close: <nil>
	// shutdown: <nil>
	// 200 OK finished
}

func ExampleWithPool() {
	gatewayURL, stop := startGateway()
	defer stop()

	// Two copies of a program serve one name together.
	quiet := tunnel.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var copies []*tunnel.Listener
	for i := range 2 {
		ln, err := tunnel.Listen(context.Background(), gatewayURL, tunnel.WithName("api"), tunnel.WithPool(), quiet)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer ln.Close()
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "copy %d", i)
		}))
		copies = append(copies, ln)
	}
	fmt.Println("same URL:", copies[0].URL() == copies[1].URL())

	// One leaves; the other serves on.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	copies[0].CloseWithContext(ctx)
	resp, err := http.Get(copies[1].URL() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(body))
	// Output:
	// same URL: true
	// 200 OK copy 1
}
