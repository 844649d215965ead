// Command quickstart shows the whole library in one process: it starts a
// gateway on loopback, opens a tunnel to it, serves a small app through the
// tunnel, then requests the app through its public URL and prints what
// happened.
//
//	go run ./examples/quickstart          # serve until interrupted
//	go run ./examples/quickstart -once    # self-check, then exit (0 on success)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/http-tunnel/tunnel"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address of the embedded gateway")
	once := flag.Bool("once", false, "exit after the self-check")
	verbose := flag.Bool("verbose", false, "log connection events")
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if err := run(*addr, *once, log); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(addr string, once bool, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	// 1. A gateway. In production it runs elsewhere (cmd/tunnel, "tunnel gateway");
	// here it is embedded on loopback.
	gw := &tunnel.Server{Logger: log}
	gln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go gw.Serve(gln)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gw.Shutdown(sctx)
	}()
	gatewayURL := "http://" + gln.Addr().String()
	fmt.Println("gateway:    ", gatewayURL)

	// 2. A tunnel, and an app served through it. This is all an app writes.
	ln, err := tunnel.Listen(ctx, gatewayURL, tunnel.WithLogger(log))
	if err != nil {
		return err
	}
	defer ln.Close()
	app := http.NewServeMux()
	app.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			name = "world"
		}
		fmt.Fprintf(w, "hello, %s! (via %s, from %s)\n", name, r.Host, r.Header.Get("X-Forwarded-For"))
	})
	go http.Serve(ln, app)
	fmt.Println("public URL: ", ln.URL())

	// 3. A public request, through the gateway and the tunnel.
	target := ln.URL() + "/hello?name=gopher"
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(target)
	if err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	fmt.Printf("GET %s -> %s\n%s", target, resp.Status, body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "hello, gopher!") {
		return errors.New("self-check failed: unexpected response")
	}
	fmt.Println("self-check: ok")
	if once {
		return nil
	}

	fmt.Println("serving; try: curl '" + ln.URL() + "/hello?name=you'   (Ctrl-C to stop)")
	<-ctx.Done()
	return nil
}
