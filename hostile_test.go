package tunnel_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/logbuf"
	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// The frames of the multiplexer (yamux), written by hand: a hostile agent
// does not use a library that keeps the rules.
const (
	frameData   = 0
	frameWindow = 1
	framePing   = 2

	flagSYN = 1
	flagACK = 2

	frameHeader = 12
)

func frame(version, typ byte, flags uint16, stream, length uint32) []byte {
	b := make([]byte, frameHeader)
	b[0], b[1] = version, typ
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint32(b[4:], stream)
	binary.BigEndian.PutUint32(b[8:], length)
	return b
}

// rawAgent holds a tunnel through a gateway as an agent written frame by
// frame. Its read loop acknowledges the streams the gateway opens (and
// sends nothing on them: every request waits for an answer that never
// comes), answers the gateway's pings, and counts the answers to its own.
type rawAgent struct {
	hangUp func()   // closes the connection at once
	conn   net.Conn // the multiplexer's byte stream
	url    string   // the tunnel's public URL

	wmu sync.Mutex

	opened   atomic.Int64  // streams the gateway opened
	pongs    atomic.Int64  // answers to this agent's pings
	lastPong atomic.Uint32 // the ID of the latest
	ended    chan struct{} // closed when the read loop ends: the gateway hung up

	mu      sync.Mutex
	waitFor int64         // opened count that closes reached
	reached chan struct{} // see waitFor
}

// dialRawAgent connects a rawAgent to the gateway at gwURL over transport
// tr, with token.
func dialRawAgent(t *testing.T, gwURL, token string, tr tunnel.Transport) *rawAgent {
	t.Helper()
	if tr == tunnel.TransportRaw {
		return dialRawTransportAgent(t, gwURL, token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ht := &http.Transport{}
	t.Cleanup(ht.CloseIdleConnections)
	hdr := http.Header{"Authorization": {"Bearer " + token}}
	ws, _, err := websocket.Dial(ctx, &http.Client{Transport: ht}, "ws"+strings.TrimPrefix(gwURL, "http")+protocol.ConnectPath, hdr, []string{protocol.SubprotocolMux})
	if err != nil {
		t.Fatal(err)
	}
	b, err := protocol.Marshal(&protocol.Ready{Version: protocol.Version})
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.OpText, b); err != nil {
		t.Fatal(err)
	}
	_, data, err := ws.ReadMessage(protocol.MaxHandshakeBytes)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := protocol.Unmarshal(data, protocol.MaxHandshakeBytes)
	if err != nil {
		t.Fatal(err)
	}
	est, ok := msg.(*protocol.ConnectionEstablished)
	if !ok {
		t.Fatalf("handshake answer: %s", data)
	}
	return startRawAgent(t, ws.NetConn(), func() { ws.CloseNow() }, est.PublicURL)
}

// dialRawTransportAgent is dialRawAgent over the raw transport: the
// upgrade, the handshake's lines and the frames, all by hand.
func dialRawTransportAgent(t *testing.T, gwURL, token string) *rawAgent {
	t.Helper()
	c, br := rawUpgrade(t, gwURL, token)
	b, err := protocol.Marshal(&protocol.Ready{Version: protocol.Version})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	msg, err := protocol.Unmarshal(line[:len(line)-1], protocol.MaxHandshakeBytes)
	if err != nil {
		t.Fatal(err)
	}
	est, ok := msg.(*protocol.ConnectionEstablished)
	if !ok {
		t.Fatalf("handshake answer: %s", line)
	}
	return startRawAgent(t, &bufferedConn{Conn: c, br: br}, func() { c.Close() }, est.PublicURL)
}

// bufferedConn reads through br, which may hold bytes read past the
// handshake.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// startRawAgent runs a rawAgent's read loop on conn until the test ends.
func startRawAgent(t *testing.T, conn net.Conn, hangUp func(), url string) *rawAgent {
	a := &rawAgent{hangUp: hangUp, conn: conn, url: url, ended: make(chan struct{})}
	go a.read()
	t.Cleanup(func() {
		hangUp()
		<-a.ended
	})
	return a
}

func (a *rawAgent) write(frames ...[]byte) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	_, err := a.conn.Write(slices.Concat(frames...))
	return err
}

func (a *rawAgent) read() {
	defer close(a.ended)
	br := bufio.NewReaderSize(a.conn, 64<<10)
	hdr := make([]byte, frameHeader)
	for {
		if _, err := io.ReadFull(br, hdr); err != nil {
			return
		}
		typ, flags := hdr[1], binary.BigEndian.Uint16(hdr[2:])
		stream, length := binary.BigEndian.Uint32(hdr[4:]), binary.BigEndian.Uint32(hdr[8:])
		switch {
		case typ == framePing && flags&flagSYN != 0:
			a.write(frame(0, framePing, flagACK, 0, length))
		case typ == framePing && flags&flagACK != 0:
			a.pongs.Add(1)
			a.lastPong.Store(length)
		case (typ == frameData || typ == frameWindow) && flags&flagSYN != 0:
			a.write(frame(0, frameWindow, flagACK, stream, 0))
			n := a.opened.Add(1)
			a.mu.Lock()
			if a.reached != nil && n >= a.waitFor {
				close(a.reached)
				a.reached = nil
			}
			a.mu.Unlock()
		}
		if typ == frameData {
			if _, err := br.Discard(int(length)); err != nil {
				return
			}
		}
	}
}

// whenOpened returns a channel closed once the gateway has opened n
// streams.
func (a *rawAgent) whenOpened(n int64) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	ch := make(chan struct{})
	if a.opened.Load() >= n {
		close(ch)
		return ch
	}
	a.waitFor, a.reached = n, ch
	return ch
}

// peaks samples the process's goroutines and heap while an attack runs.
type peaks struct {
	goroutines, heap         int
	baseGoroutines, baseHeap int
	stop, done               chan struct{}
}

func samplePeaks() *peaks {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	p := &peaks{baseGoroutines: runtime.NumGoroutine(), baseHeap: int(ms.HeapInuse), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			p.goroutines = max(p.goroutines, runtime.NumGoroutine())
			runtime.ReadMemStats(&ms)
			p.heap = max(p.heap, int(ms.HeapInuse))
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// end stops sampling and returns the growth over the baseline.
func (p *peaks) end() (goroutines, heapMiB int) {
	close(p.stop)
	<-p.done
	return p.goroutines - p.baseGoroutines, (p.heap - p.baseHeap) >> 20
}

// hostileGateway is a gateway on loopback that knows the hostile agent's
// token as subject "mallory", with an honest tunnel through it whose
// round trips the test checks during each attack.
func hostileGateway(t *testing.T) (gwURL string, logs *logbuf.Buffer, honest func(t *testing.T) time.Duration) {
	t.Helper()
	logs = &logbuf.Buffer{}
	auth := tunnel.AuthenticatorFunc(func(_ context.Context, r *http.Request) (tunnel.Identity, error) {
		switch tunnel.TokenFromRequest(r) {
		case "mallory-token":
			return tunnel.Identity{Subject: "mallory"}, nil
		case "alice-token":
			return tunnel.Identity{Subject: "alice"}, nil
		}
		return tunnel.Identity{}, tunnel.ErrUnauthorized
	})
	srv := &tunnel.Server{Routing: tunnel.RoutePath, Authenticator: auth,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	gw := tunneltest.NewGateway(t, srv)
	ln := gw.Listen(t, tunnel.WithToken("alice-token"), tunnel.WithLogger(quiet))
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "alice") }))
	c := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	return gw.URL, logs, func(t *testing.T) time.Duration {
		t.Helper()
		start := time.Now()
		resp, err := c.Get(ln.URL() + "/")
		if err != nil {
			t.Fatalf("the honest tunnel: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "alice" {
			t.Fatalf("the honest tunnel: %d %q", resp.StatusCode, b)
		}
		return time.Since(start)
	}
}

// An agent that breaks the multiplexer's rules is cut off and named in a
// warning, within bounds on the gateway's goroutines and heap, and the
// other tunnels keep answering. Each case sends what, unbounded, cost a
// gateway hundreds of megabytes or its liveness.
func TestHostileAgentIsCutOff(t *testing.T) {
	for _, tr := range []tunnel.Transport{tunnel.TransportRaw, tunnel.TransportWebSocket} {
		t.Run(string(tr), func(t *testing.T) { testHostileAgentIsCutOff(t, tr) })
	}
}

func testHostileAgentIsCutOff(t *testing.T, tr tunnel.Transport) {
	gwURL, logs, honest := hostileGateway(t)
	honest(t)

	// 20,000 stream openings; before the cap each was a stream and a
	// goroutine (100,000 made 50,784 streams and 377 MB).
	var flood []byte
	for i := range uint32(20000) {
		flood = append(flood, frame(0, frameWindow, flagSYN, 2*(i+1), 0)...)
	}
	for _, tc := range []struct {
		name   string
		frames [][]byte
		err    string
	}{
		{"20000 streams", [][]byte{flood}, "more streams than allowed"},
		{"the gateway's stream ID", [][]byte{frame(0, frameWindow, flagSYN, 1001, 0)}, "invalid ID"},
		{"a window past 4 GiB", [][]byte{frame(0, frameWindow, flagSYN, 2, 0), frame(0, frameWindow, 0, 2, 1<<32-1)}, "overflowed a send window"},
		{"data past the window", [][]byte{frame(0, frameWindow, flagSYN, 2, 0), frame(0, frameData, 0, 2, 1<<30), make([]byte, 1024)}, "recv window exceeded"},
		{"an unknown frame type", [][]byte{frame(0, 9, 0, 0, 0)}, "invalid msg type"},
		{"an unknown version", [][]byte{frame(7, framePing, flagSYN, 0, 1)}, "invalid protocol version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := dialRawAgent(t, gwURL, "mallory-token", tr)
			p := samplePeaks()
			for _, f := range tc.frames {
				if err := a.write(f); err != nil {
					break // cut off mid-attack
				}
			}
			select {
			case <-a.ended:
			case <-time.After(10 * time.Second):
				t.Fatal("the gateway did not cut the agent off")
			}
			latency := honest(t)
			goroutines, heap := p.end()
			t.Logf("peak growth: %d goroutines, %d MiB heap; honest round trip after: %v", goroutines, heap, latency)
			if goroutines > 100 || heap > 32 {
				t.Errorf("peak growth %d goroutines, %d MiB heap; want at most 100 and 32", goroutines, heap)
			}
			// The warning names the agent and the rule it broke.
			if out, ok := logs.WaitFor(10*time.Second, func(logged string) bool {
				for line := range strings.Lines(logged) {
					if strings.Contains(line, "broke the protocol") && strings.Contains(line, `"subject":"mallory"`) && strings.Contains(line, tc.err) {
						return true
					}
				}
				return false
			}); !ok {
				t.Errorf("no warning naming mallory and %q in:\n%s", tc.err, out)
			}
			// Its tunnel is gone; nothing waits on it.
			if code, _, _ := get(t, newClient(t), a.url+"/"); code == http.StatusOK {
				t.Errorf("the cut tunnel still answers")
			}
		})
	}
}

// A million pings cost the gateway a bounded queue of answers, not a
// goroutine each (that made 449,000 goroutines and 1.6 GB): the agent
// stays connected, its latest ping is answered, and the other tunnel keeps
// answering during the flood.
func TestHostileAgentPingFlood(t *testing.T) {
	for _, tr := range []tunnel.Transport{tunnel.TransportRaw, tunnel.TransportWebSocket} {
		t.Run(string(tr), func(t *testing.T) { testHostileAgentPingFlood(t, tr) })
	}
}

func testHostileAgentPingFlood(t *testing.T, tr tunnel.Transport) {
	gwURL, _, honest := hostileGateway(t)
	base := honest(t)
	a := dialRawAgent(t, gwURL, "mallory-token", tr)
	pings := 1_000_000
	if raceEnabled {
		pings = 200_000 // the race detector makes each frame ~10 times dearer
	}
	const batch = 4096
	p := samplePeaks()
	flood := make(chan error, 1)
	go func() {
		buf := make([]byte, 0, batch*frameHeader)
		for i := 1; i <= pings; i++ {
			buf = append(buf, frame(0, framePing, flagSYN, 0, uint32(i))...)
			if len(buf) == cap(buf) || i == pings {
				if err := a.write(buf); err != nil {
					flood <- err
					return
				}
				buf = buf[:0]
			}
		}
		flood <- nil
	}()
	var during []time.Duration
	for i := 0; ; i++ {
		during = append(during, honest(t))
		select {
		case err := <-flood:
			if err != nil {
				t.Fatalf("the gateway hung up on pings: %v", err)
			}
		default:
			continue
		}
		break
	}
	// The latest ping is answered: a keepalive is never lost in a flood.
	for a.lastPong.Load() != uint32(pings) {
		select {
		case <-a.ended:
			t.Fatalf("the gateway hung up; the latest ping answered was %d of %d", a.lastPong.Load(), pings)
		case <-time.After(time.Millisecond):
		}
	}
	goroutines, heap := p.end()
	slices.Sort(during)
	t.Logf("%d pings: %d answered, peak growth %d goroutines, %d MiB heap; honest round trip %v before, median %v and max %v of %d during",
		pings, a.pongs.Load(), goroutines, heap, base, during[len(during)/2], during[len(during)-1], len(during))
	if goroutines > 50 || heap > 32 {
		t.Errorf("peak growth %d goroutines, %d MiB heap; want at most 50 and 32", goroutines, heap)
	}
	select {
	case <-a.ended:
		t.Error("the gateway cut off an agent for pinging")
	default:
	}
}

// When an agent's connection ends with thousands of requests waiting on
// it, every public client is answered at once: the blocked readers return
// without spinning. (The same code in upstream yamux froze a gateway for
// over 65 s, with 3,013 of 5,000 clients never answered.) Past the
// session's stream cap a request is refused with 503 at once instead of
// waiting.
func TestCutWithThousandsOfRequestsWaiting(t *testing.T) {
	gwURL, _, honest := hostileGateway(t)
	a := dialRawAgent(t, gwURL, "mallory-token", tunnel.TransportRaw)
	requests, inFlight := 5000, 4096 // the gateway's stream cap per agent
	if raceEnabled {
		requests, inFlight = 1200, 1200 // the race detector allows 8,128 goroutines
	}
	u, err := url.Parse(a.url)
	if err != nil {
		t.Fatal(err)
	}
	reached := a.whenOpened(int64(inFlight))
	// One goroutine writes every request and reads every answer, so that
	// the gateway's goroutines are the only ones per request.
	conns := make([]net.Conn, requests)
	for i := range conns {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET %s/wait/%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.Path, i, u.Host)
		conns[i] = c
	}
	select {
	case <-reached:
	case <-time.After(time.Minute):
		t.Fatalf("the gateway opened %d streams of %d", a.opened.Load(), inFlight)
	}
	honest(t)

	cpu0, start := cpuTime(t), time.Now()
	a.hangUp()
	statuses := map[int]int{}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("request %d: no answer: %v", i, err)
		}
		resp.Body.Close()
		statuses[resp.StatusCode]++
	}
	wall, cpu := time.Since(start), cpuTime(t)-cpu0
	t.Logf("%d requests (%d in flight) answered %v in %v after the cut, using %v of CPU", requests, inFlight, statuses, wall, cpu)
	if statuses[http.StatusBadGateway] < inFlight || statuses[http.StatusBadGateway]+statuses[http.StatusServiceUnavailable] != requests {
		t.Errorf("statuses %v; want %d of 502 (agent gone) and the rest 503 (too many in flight)", statuses, inFlight)
	}
	if wall > 15*time.Second || cpu > 15*time.Second {
		t.Errorf("answering took %v and %v of CPU; want well under 15 s each", wall, cpu)
	}
	honest(t)
}

// cpuTime is the CPU time the process has used.
func cpuTime(t *testing.T) time.Duration {
	d, ok := processCPU()
	if !ok {
		t.Skip("this platform's CPU time is not read")
	}
	return d
}
