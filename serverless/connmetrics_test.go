package serverless

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// take returns what was written since the last take.
func (l *lockedBuffer) take() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := bytes.Clone(l.b.Bytes())
	l.b.Reset()
	return b
}

// TestConnectionMetrics checks that the Lambda path emits the connection
// metrics the dashboards plot, as EMF lines: ConnectionEstablished when an
// agent's tunnel is up, ConnectionClosed when its connection ends.
func TestConnectionMetrics(t *testing.T) {
	t.Parallel()
	var out lockedBuffer
	mp := NewMeterProvider(&out)
	t.Cleanup(func() { mp.Shutdown(t.Context()) })
	// The ready invocation records the metric after posting
	// connection_established, which the agent may read first.
	messages := make(chan struct{}, 16)
	g := newGateway(t, gatewayConfig{meter: mp, afterMessage: func(events.APIGatewayWebsocketProxyRequest) { messages <- struct{}{} }})

	sum := func(name string) float64 {
		t.Helper()
		if err := mp.ForceFlush(t.Context()); err != nil {
			t.Fatal(err)
		}
		var total float64
		for _, d := range parseEMF(t, out.take()) {
			if raw, ok := d.members[name]; ok {
				var v float64
				if err := json.Unmarshal(raw, &v); err != nil {
					t.Fatalf("%s = %s: %v", name, raw, err)
				}
				total += v
			}
		}
		return total
	}

	ln, _ := g.agent(t, echo)
	select {
	case <-messages: // ready, the agent's first message
	case <-time.After(10 * time.Second):
		t.Fatal("the ready invocation did not return")
	}
	if got := sum("ConnectionEstablished"); got != 1 {
		t.Errorf("ConnectionEstablished = %v after one agent connected, want 1", got)
	}
	rec, err := g.h.Store.Get(t.Context(), ln.ID())
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	g.waitDisconnect(t, rec.ConnectionID)
	if got := sum("ConnectionClosed"); got != 1 {
		t.Errorf("ConnectionClosed = %v after the agent left, want 1", got)
	}
}
