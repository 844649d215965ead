package yamux

// Tests of the bounds on what a peer can make a session hold. Each drives
// one end of a session's connection with crafted frames, tries to exceed
// a bound, and measures the goroutines and memory the session used.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hostilePeer is the far end of a session's connection, driven by a test.
type hostilePeer struct {
	t    testing.TB
	conn net.Conn
}

// newHostilePeer starts a session over a net.Pipe, the yamux client if
// client is true, and returns it and the peer at the pipe's other end.
// The session logs nothing.
func newHostilePeer(t testing.TB, conf *Config, client bool) (*Session, *hostilePeer) {
	t.Helper()
	conf.LogOutput, conf.Logger = io.Discard, nil
	a, b := net.Pipe()
	var (
		s   *Session
		err error
	)
	if client {
		s, err = Client(a, conf)
	} else {
		s, err = Server(a, conf)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		b.Close()
	})
	return s, &hostilePeer{t: t, conn: b}
}

// frame returns a frame's header.
func frame(typ uint8, flags uint16, id, length uint32) []byte {
	h := header(make([]byte, headerSize))
	h.encode(typ, flags, id, length)
	return h
}

// send writes frames, in one write. Its error is the connection's: the
// session closes it when it ends.
func (p *hostilePeer) send(frames ...[]byte) error {
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	_, err := p.conn.Write(b)
	return err
}

// flood sends n frames, frame(i) for i from 0, in writes of a thousand. It
// returns how many it sent before the connection failed.
func (p *hostilePeer) flood(n int, frame func(i int) []byte) int {
	var b []byte
	for i := 0; i < n; i += 1000 {
		b = b[:0]
		for j := i; j < min(i+1000, n); j++ {
			b = append(b, frame(j)...)
		}
		if _, err := p.conn.Write(b); err != nil {
			return i
		}
	}
	return n
}

// read reads what the session sends, until the connection ends, passing
// each frame's header to f; payloads are discarded.
func (p *hostilePeer) read(f func(header)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		br := bufio.NewReader(p.conn)
		h := header(make([]byte, headerSize))
		for {
			if _, err := io.ReadFull(br, h); err != nil {
				return
			}
			if h.MsgType() == typeData {
				if _, err := io.CopyN(io.Discard, br, int64(h.Length())); err != nil {
					return
				}
			}
			f(h)
		}
	}()
	p.t.Cleanup(func() {
		p.conn.Close()
		<-done
	})
}

// usage measures what an attack costs: the peak number of goroutines
// while it runs (sampled every millisecond) and the memory in use at its
// end, against what they were at its start.
type usage struct {
	goroutines0 int
	mem0        int64
	stop        chan struct{}
	peak        chan int
}

func measure() *usage {
	u := &usage{
		goroutines0: runtime.NumGoroutine(),
		mem0:        memInUse(),
		stop:        make(chan struct{}),
		peak:        make(chan int),
	}
	go func() {
		peak := 0
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, runtime.NumGoroutine())
			select {
			case <-u.stop:
				u.peak <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return u
}

// end returns the goroutines the attack added at its peak, not counting
// the sampler, and the memory it added.
func (u *usage) end() (goroutines int, mem int64) {
	mem = memInUse() - u.mem0
	close(u.stop)
	return <-u.peak - 1 - u.goroutines0, mem
}

// memInUse is the memory that live objects and goroutine stacks take,
// after a collection.
func memInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// waitClosed waits for s to end, and returns why.
func waitClosed(t testing.TB, s *Session) error {
	t.Helper()
	select {
	case <-s.CloseChan():
	case <-time.After(hangTimeout):
		t.Fatal("the session did not end")
	}
	return s.Err()
}

// TestPeerStreamLimit: a peer that opens streams without end (100,000
// SYNs) ends the session with ErrTooManyStreams once it has more open
// than MaxIncomingStreams, as the gateway's session with an agent, which
// gives each stream the agent opens a goroutine. Upstream accepted 50,784
// of 100,000: 50,784 streams and goroutines, 377 MB.
func TestPeerStreamLimit(t *testing.T) {
	const (
		limit     = 16
		syns      = 100_000
		maxAdded  = limit + 4 // the handlers, and the session's ping answers and closing
		maxMemory = 4 << 20
	)
	conf := testConfNoKeepAlive()
	conf.MaxIncomingStreams = limit
	conf.AcceptBacklog = 1024
	sess, peer := newHostilePeer(t, conf, true)
	peer.read(func(header) {})

	u := measure()
	var (
		accepted, handling atomic.Int64
		handlers           sync.WaitGroup
		acceptDone         = make(chan struct{})
	)
	go func() {
		defer close(acceptDone)
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				return
			}
			accepted.Add(1)
			handling.Add(1)
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				defer handling.Add(-1)
				io.Copy(io.Discard, st)
			}()
		}
	}()
	sent := peer.flood(syns, func(i int) []byte { return frame(typeWindowUpdate, flagSYN, uint32(2+2*i), 0) })
	err := waitClosed(t, sess)
	goroutines, mem := u.end()
	<-acceptDone
	handlers.Wait()
	t.Logf("the session ended within the first %d SYNs; %d streams accepted; %+d goroutines at the peak, %+d KiB", sent+1000, accepted.Load(), goroutines, mem>>10)

	if !errors.Is(err, ErrTooManyStreams) {
		t.Errorf("the session ended with %v, want ErrTooManyStreams", err)
	}
	if n := accepted.Load(); n > limit {
		t.Errorf("%d streams accepted, want at most %d", n, limit)
	}
	if goroutines > maxAdded || mem > maxMemory {
		t.Errorf("%+d goroutines, %+d bytes; want at most %d and %d", goroutines, mem, maxAdded, maxMemory)
	}
}

// TestStreamLimitsHoldUnderChurn: a side whose MaxOutgoingStreams is its
// peer's MaxIncomingStreams never exceeds the peer's limit, however its
// streams end (either side closing first), and OpenStream fails with
// ErrStreamLimit, without ending the session, while the limit is reached.
func TestStreamLimitsHoldUnderChurn(t *testing.T) {
	const (
		limit   = 8
		workers = 12 // more than the limit: opens meet it
		rounds  = 60
	)
	clientConf, serverConf := testConfNoKeepAlive(), testConfNoKeepAlive()
	clientConf.MaxOutgoingStreams = limit
	serverConf.MaxIncomingStreams = limit
	clientConn, serverConn := testConnTCP(t)
	client, server := testClientServerConfig(t, clientConn, serverConn, clientConf, serverConf)

	// The server answers each stream with a byte, and closes it first
	// on odd streams (IDs 1, 5, 9, ...), after the client on the others.
	var served sync.WaitGroup
	served.Add(1)
	go func() {
		defer served.Done()
		for {
			st, err := server.AcceptStream()
			if err != nil {
				return
			}
			served.Add(1)
			go func() {
				defer served.Done()
				b := make([]byte, 1)
				if _, err := io.ReadFull(st, b); err != nil {
					return
				}
				st.Write(b)
				if st.StreamID()%4 == 1 {
					st.Close()
					io.Copy(io.Discard, st)
				} else {
					io.Copy(io.Discard, st)
					st.Close()
				}
			}()
		}
	}()

	var (
		wg      sync.WaitGroup
		limited atomic.Int64
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				st, err := client.OpenStream()
				for errors.Is(err, ErrStreamLimit) {
					// Poll until a stream closes.
					limited.Add(1)
					for client.NumStreams() >= limit && client.Err() == nil {
						time.Sleep(50 * time.Microsecond)
					}
					st, err = client.OpenStream()
				}
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := st.Write([]byte{1}); err != nil {
					t.Error(err)
					return
				}
				if st.StreamID()%4 == 1 {
					io.Copy(io.Discard, st) // until the server's FIN
					st.Close()
				} else {
					st.Close()
					io.Copy(io.Discard, st)
				}
			}
		}()
	}
	wg.Wait()
	if err := server.Err(); err != nil {
		t.Fatalf("the server's session ended: %v", err)
	}
	waitUntil(t, "the streams to close", func() bool { return client.NumStreams() == 0 && server.NumStreams() == 0 })
	t.Logf("%d opens met the limit", limited.Load())

	// At the limit an open fails, and the session goes on.
	var held []*Stream
	for range limit {
		st, err := client.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, st)
	}
	if _, err := client.OpenStream(); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("open past the limit: %v, want ErrStreamLimit", err)
	}
	if _, err := client.Ping(); err != nil {
		t.Fatal(err)
	}
	for _, st := range held {
		st.Close()
	}
	client.Close()
	served.Wait()
}

// TestPingFlood: a peer that floods pings (1,000,000) and reads nothing
// makes the session hold a bounded queue of answers, not a goroutine per
// ping (upstream: 449,000 goroutines, 1.6 GB); once it reads, the latest
// ping is answered.
func TestPingFlood(t *testing.T) {
	const (
		pings     = 1_000_000
		maxAdded  = 2
		maxMemory = 1 << 20
	)
	sess, peer := newHostilePeer(t, testConfNoKeepAlive(), false)

	u := measure()
	sent := peer.flood(pings, func(i int) []byte { return frame(typePing, flagSYN, 0, uint32(i)) })
	if sent != pings {
		t.Fatalf("the session ended after %d pings: %v", sent, sess.Err())
	}
	// The last write returned once the session had read it; the pings
	// of its last few reads may wait in the buffer yet.
	waitUntil(t, "the last ping to be read", func() bool {
		q := sess.pongs
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.n > 0 && q.ids[(q.head+q.n-1)%len(q.ids)] == pings-1
	})
	goroutines, mem := u.end()
	t.Logf("%+d goroutines at the peak, %+d KiB", goroutines, mem>>10)
	if goroutines > maxAdded || mem > maxMemory {
		t.Errorf("%+d goroutines, %+d bytes; want at most %d and %d", goroutines, mem, maxAdded, maxMemory)
	}

	// The peer reads at last, and pings once more: that ping is answered.
	const last = 0xfeedface
	var (
		mu       sync.Mutex
		answered = map[uint32]bool{}
	)
	peer.read(func(h header) {
		if h.MsgType() == typePing && h.Flags() == flagACK {
			mu.Lock()
			answered[h.Length()] = true
			mu.Unlock()
		}
	})
	if err := peer.send(frame(typePing, flagSYN, 0, last)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the last ping's answer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return answered[last]
	})
	mu.Lock()
	defer mu.Unlock()
	// The answers being written when the flood stalled the send loop,
	// those queued since, and the last.
	if len(answered) > 2*maxPendingPongs+1 {
		t.Errorf("%d pings answered after the flood, want at most %d", len(answered), 2*maxPendingPongs+1)
	}
}

// TestRecvBufferStaysWithinWindow: a stream's receive buffer never holds,
// nor has capacity for, more than the window, whatever the sizes of the
// frames that fill it and of the reads that empty it (upstream's
// bytes.Buffer grew to about twice the window), and a frame past the
// window ends the session with ErrRecvWindowExceeded.
func TestRecvBufferStaysWithinWindow(t *testing.T) {
	conf := testConfNoKeepAlive()
	window := int(conf.MaxStreamWindowSize)
	sess, peer := newHostilePeer(t, conf, false)
	var granted atomic.Int64 // window updates for stream 1
	peer.read(func(h header) {
		if h.MsgType() == typeWindowUpdate && h.StreamID() == 1 {
			granted.Add(int64(h.Length()))
		}
	})
	if err := peer.send(frame(typeWindowUpdate, flagSYN, 1, 0)); err != nil {
		t.Fatal(err)
	}
	st, err := sess.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}

	sizes := []int{1, 100, 1000, 4096, 7000, 16 << 10, 65 << 10}
	sent, frames, read := 0, 0, 0
	// fill sends frames of the sizes above, in turn, up to the window the
	// session has granted, and waits until the session has read them.
	fill := func() {
		t.Helper()
		limit := window + int(granted.Load())
		for sent < limit {
			n := min(sizes[frames%len(sizes)], limit-sent)
			frames++
			if err := peer.send(frame(typeData, 0, 1, uint32(n)), make([]byte, n)); err != nil {
				t.Fatal(err)
			}
			sent += n
		}
		waitUntil(t, "the frames to be read", func() bool {
			st.recvLock.Lock()
			defer st.recvLock.Unlock()
			return st.recvBuf.Len() == sent-read
		})
	}
	check := func(when string) {
		t.Helper()
		st.recvLock.Lock()
		defer st.recvLock.Unlock()
		if c := cap(st.recvBuf.buf); c > window {
			t.Fatalf("%s: the receive buffer's capacity is %d bytes, past the %d-byte window", when, c, window)
		}
	}
	buf := make([]byte, 9000)
	u := measure()
	for round := range 12 {
		fill()
		check(fmt.Sprintf("round %d, full", round))
		// Read more than half the window, which sends an update, in
		// reads of a size that changes with the round.
		g := granted.Load()
		for target := read + window/2 + round*1000 + 1; read < target; {
			n, err := st.Read(buf[:min(len(buf), 1000+round*700, target-read)])
			if err != nil {
				t.Fatal(err)
			}
			read += n
		}
		waitUntil(t, "the window update", func() bool { return granted.Load() > g })
		check(fmt.Sprintf("round %d, read", round))
	}

	// One byte past the window.
	fill()
	peer.send(frame(typeData, 0, 1, 1), []byte{0})
	if err := waitClosed(t, sess); !errors.Is(err, ErrRecvWindowExceeded) {
		t.Fatalf("the session ended with %v, want ErrRecvWindowExceeded", err)
	}
	// The buffer, at most a window, is all the session kept.
	goroutines, mem := u.end()
	t.Logf("%d frames; %+d goroutines at the peak, %+d KiB", frames, goroutines, mem>>10)
	if maxMemory := int64(window + 256<<10); goroutines > 2 || mem > maxMemory {
		t.Errorf("%+d goroutines, %+d bytes; want at most 2 and %d", goroutines, mem, maxMemory)
	}
}

// TestAcceptBacklogBound: a peer that opens streams the application does
// not accept (10,000) gets all but AcceptBacklog of them reset, and the
// session holds no more.
func TestAcceptBacklogBound(t *testing.T) {
	const (
		backlog   = 32
		syns      = 10_000
		maxMemory = 2 << 20
	)
	conf := testConfNoKeepAlive()
	conf.AcceptBacklog = backlog
	sess, peer := newHostilePeer(t, conf, false)
	var resets atomic.Int64
	peer.read(func(h header) {
		if h.Flags()&flagRST != 0 {
			resets.Add(1)
		}
	})

	u := measure()
	if sent := peer.flood(syns, func(i int) []byte { return frame(typeWindowUpdate, flagSYN, uint32(1+2*i), 0) }); sent != syns {
		t.Fatalf("the session ended after %d SYNs: %v", sent, sess.Err())
	}
	waitUntil(t, "the resets", func() bool { return resets.Load() == syns-backlog })
	goroutines, mem := u.end()
	t.Logf("%d resets; %+d goroutines at the peak, %+d KiB", resets.Load(), goroutines, mem>>10)
	if n := sess.NumStreams(); n != backlog {
		t.Errorf("the session holds %d streams, want the backlog, %d", n, backlog)
	}
	if goroutines > 2 || mem > maxMemory {
		t.Errorf("%+d goroutines, %+d bytes; want at most 2 and %d", goroutines, mem, maxMemory)
	}
}

// TestIgnoredFramesFlood: frames that change nothing (pings' answers
// nobody waits for, updates and resets of unknown streams, data for them,
// repeated GoAways) cost the session nothing it keeps, however many
// (100,000 of each).
func TestIgnoredFramesFlood(t *testing.T) {
	const (
		each      = 100_000
		maxMemory = 1 << 20
	)
	sess, peer := newHostilePeer(t, testConfNoKeepAlive(), false)
	const last = 0xfeedface
	var answered atomic.Bool
	peer.read(func(h header) {
		if h.MsgType() == typePing && h.Flags() == flagACK && h.Length() == last {
			answered.Store(true)
		}
	})

	kinds := []func(i int) []byte{
		func(i int) []byte { return frame(typePing, flagACK, 0, uint32(i)) },
		func(i int) []byte { return frame(typeWindowUpdate, 0, uint32(1+2*i), 1<<20) },
		func(i int) []byte { return frame(typeWindowUpdate, flagRST, uint32(1+2*i), 0) },
		func(i int) []byte { return append(frame(typeData, 0, uint32(1+2*i), 16), make([]byte, 16)...) },
		func(i int) []byte { return frame(typeGoAway, 0, 0, goAwayNormal) },
	}
	u := measure()
	for k, f := range kinds {
		if sent := peer.flood(each, f); sent != each {
			t.Fatalf("kind %d: the session ended after %d frames: %v", k, sent, sess.Err())
		}
	}
	// The session answers a ping after the frames before it.
	if err := peer.send(frame(typePing, flagSYN, 0, last)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the ping's answer", answered.Load)
	goroutines, mem := u.end()
	t.Logf("%+d goroutines at the peak, %+d KiB", goroutines, mem>>10)
	if goroutines > 2 || mem > maxMemory || sess.NumStreams() != 0 {
		t.Errorf("%+d goroutines, %+d bytes, %d streams; want at most 2, %d and none", goroutines, mem, sess.NumStreams(), maxMemory)
	}
}

// TestMalformedFramesEndTheSession: a frame that breaks the protocol ends
// the session at once with an error that says how, without reading what
// the frame announces (a length of 4 GiB is a header's worth of work) or
// keeping more than it had.
func TestMalformedFramesEndTheSession(t *testing.T) {
	const maxMemory = 1 << 20                     // the largest case sends a window, 256 KiB
	syn := frame(typeWindowUpdate, flagSYN, 2, 0) // the session is the client
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   error
	}{
		{"version", [][]byte{{1, typePing, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}}, ErrInvalidVersion},
		{"type", [][]byte{frame(typeGoAway+1, 0, 0, 0)}, ErrInvalidMsgType},
		{"4 GiB of data for an unknown stream", [][]byte{frame(typeData, 0, 8, 1<<32-1)}, ErrRecvWindowExceeded},
		{"data past the window", [][]byte{syn, frame(typeData, 0, 2, initialStreamWindow), make([]byte, initialStreamWindow), frame(typeData, 0, 2, 1), {0}}, ErrRecvWindowExceeded},
		{"window past 4 GiB", [][]byte{syn, frame(typeWindowUpdate, 0, 2, 1<<32-1)}, ErrWindowOverflow},
		{"stream of this side's parity", [][]byte{frame(typeWindowUpdate, flagSYN, 3, 0)}, ErrInvalidStreamID},
		{"stream 0", [][]byte{frame(typeWindowUpdate, flagSYN, 0, 0)}, ErrInvalidStreamID},
		{"stream opened twice", [][]byte{syn, syn}, ErrDuplicateStream},
		{"FIN twice", [][]byte{syn, frame(typeWindowUpdate, flagFIN, 2, 0), frame(typeWindowUpdate, flagFIN, 2, 0)}, ErrUnexpectedFlag},
		{"GoAway: protocol error", [][]byte{frame(typeGoAway, 0, 0, goAwayProtoErr)}, ErrRemoteProtocolError},
		{"GoAway: internal error", [][]byte{frame(typeGoAway, 0, 0, goAwayInternalErr)}, ErrRemoteInternalError},
		{"GoAway: unknown code", [][]byte{frame(typeGoAway, 0, 0, 7)}, ErrUnexpectedGoAway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess, peer := newHostilePeer(t, testConfNoKeepAlive(), true)
			peer.read(func(header) {})
			u := measure()
			sent := make(chan struct{})
			go func() { // the session may end before it has read them all
				defer close(sent)
				peer.send(tc.frames...)
			}()
			err := waitClosed(t, sess)
			<-sent
			goroutines, mem := u.end()
			if !errors.Is(err, tc.want) {
				t.Fatalf("the session ended with %v, want %v", err, tc.want)
			}
			if goroutines > 1 || mem > maxMemory {
				t.Errorf("%+d goroutines, %+d bytes; want at most 1 (the sender) and %d", goroutines, mem, maxMemory)
			}
		})
	}
}
