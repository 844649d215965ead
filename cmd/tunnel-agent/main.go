// Command tunnel-agent forwards a local HTTP service through a tunnel
// gateway and prints its public URL: the agent of the tunnel command
// alone, which installs without the gateway's backends.
//
//	go install github.com/http-tunnel/tunnel/cmd/tunnel-agent@latest
//	TUNNEL_TOKEN=s3cret tunnel-agent --gateway https://tunnel.example.com 3000
//
// It takes the flags of "tunnel agent" (run it with -h), including the
// original agent's -p/--port, -e/--endpoint, $TTF_ENDPOINT and
// $TTF_TOKEN. Unlike tunnel, it exports no traces.
//
// Exit status: 0 on success, on -h, or after SIGINT, SIGTERM or SIGHUP; 1
// on an error, including a refusal for good by the gateway; 2 on a
// mistake in the command line.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/http-tunnel/tunnel/internal/agentcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	const name = "tunnel-agent"
	err := agentcli.Command{Name: name, Stdout: os.Stdout, Stderr: os.Stderr}.Run(ctx, os.Args[1:])
	stop()
	os.Exit(agentcli.Exit(os.Stderr, name, err))
}
