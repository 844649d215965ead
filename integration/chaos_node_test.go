package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/store/redisstore"
)

// chaosNodeEnv, when set in the environment of the integration test
// binary, makes TestMain run one gateway node of TestChaos instead of the
// tests: the variable holds the node's chaosNodeConfig as JSON. The chaos
// test starts each node as such a process of its own, so that it can kill
// the node with SIGKILL or stop it with SIGTERM.
const chaosNodeEnv = "TUNNEL_CHAOS_NODE"

// chaosNodeConfig is what a chaos gateway node is told by its parent.
type chaosNodeConfig struct {
	Addr            string        // loopback host:port to listen on; NodeURL is http://Addr
	Redis           string        // host:port of the chaos test's private Redis
	RedisPassword   string        // its requirepass
	Secret          string        // NodeSecret, the same on every node
	ShutdownGrace   time.Duration // Server.ShutdownGrace
	ResponseTimeout time.Duration // Server.ResponseTimeout
	ShutdownTimeout time.Duration // bounds Shutdown after SIGTERM
	Debug           bool          // log at debug level instead of warnings only
}

// The lines a chaos node prints on stdout.
const (
	chaosReadyLine   = "chaos node ready"
	chaosStoppedLine = "chaos node stopped"
)

// runChaosNode is the main function of a chaos gateway node: a
// tunnel.Server on the chaos Redis, serving on cfg.Addr until SIGTERM,
// then shut down gracefully. It prints chaosReadyLine on stdout once it
// listens. It exits when its parent goes away: its stdin is a pipe from
// the parent, whose end closes when the parent dies, however it dies (on
// Linux the parent also asks for SIGKILL at its death).
func runChaosNode() int {
	var cfg chaosNodeConfig
	if err := json.Unmarshal([]byte(os.Getenv(chaosNodeEnv)), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "chaos node: bad %s: %v\n", chaosNodeEnv, err)
		return 2
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		fmt.Fprintln(os.Stderr, "chaos node: stdin closed, the parent is gone; exiting")
		os.Exit(3)
	}()
	level := slog.LevelWarn
	if cfg.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("node", cfg.Addr)

	rdb := redis.NewClient(&redis.Options{Addr: cfg.Redis, Password: cfg.RedisPassword})
	defer rdb.Close()
	srv := &tunnel.Server{
		Routing:         tunnel.RoutePath,
		BaseURL:         "http://tunnel.test", // one public name, as behind a load balancer
		Store:           redisstore.New(rdb, redisstore.Options{}),
		NodeURL:         "http://" + cfg.Addr,
		NodeSecret:      cfg.Secret,
		ShutdownGrace:   cfg.ShutdownGrace,
		ResponseTimeout: cfg.ResponseTimeout,
		Logger:          log,
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos node: %v\n", err)
		return 1
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Println(chaosReadyLine, ln.Addr())

	select {
	case err := <-served:
		fmt.Fprintf(os.Stderr, "chaos node: Serve returned before a stop: %v\n", err)
		return 1
	case <-stop:
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "chaos node: Shutdown: %v (after %v)\n", err, time.Since(start))
		return 1
	}
	fmt.Println(chaosStoppedLine, time.Since(start))
	return 0
}
