package main

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
)

// TestAgentLogEvents checks the agent's log of connection events:
// reconnect attempts always, heartbeats only with --verbose.
func TestAgentLogEvents(t *testing.T) {
	t.Parallel()
	events := []tunnel.Event{
		{Kind: tunnel.EventReconnecting, TunnelID: "app", Attempt: 2, Delay: 1500 * time.Millisecond, Gateway: "http://gw:8080"},
		{Kind: tunnel.EventHeartbeat, TunnelID: "app", RTT: 3 * time.Millisecond},
	}
	for _, tt := range []struct {
		level slog.Level
		want  []string
	}{
		{slog.LevelInfo, []string{`level=INFO msg="reconnecting to the gateway" tunnel_id=app attempt=2 delay=1.5s gateway=http://gw:8080`}},
		{slog.LevelDebug, []string{
			`level=INFO msg="reconnecting to the gateway" tunnel_id=app attempt=2 delay=1.5s gateway=http://gw:8080`,
			`level=DEBUG msg=heartbeat tunnel_id=app rtt=3ms`,
		}},
	} {
		var out strings.Builder
		log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{
			Level: tt.level,
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey && len(groups) == 0 {
					return slog.Attr{}
				}
				return a
			},
		}))
		logEvents := logEvents(log)
		for _, e := range events {
			logEvents(e)
		}
		if got := strings.Split(strings.TrimSpace(out.String()), "\n"); !slices.Equal(got, tt.want) {
			t.Errorf("at %v, logged:\n%s\nwant:\n%s", tt.level, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
		}
	}
}
