package yamux

// Tests of what a session's end does to the streams' blocked callers.

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time, user and system, this process has used.
func cpuTime(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSessionEndReleasesBlockedStreams ends a session under thousands of
// blocked readers and some blocked writers, as when an agent with that
// many requests in flight disconnects. Every one must return, with an
// error, promptly and without spinning: upstream's readers and writers
// woke on the closed shutdown channel again and again until the session's
// force-close reached their stream, which froze the gateway for over a
// minute at 5,000 streams and 400 s at 20,000.
func TestSessionEndReleasesBlockedStreams(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(client, server *Session)
	}{
		// The session ends when its connection does (the gateway's
		// session when the agent disconnects)...
		{"the peer leaves", func(client, server *Session) { client.Close() }},
		// ...or when it is closed (a failed keepalive, a stop).
		{"Close", func(client, server *Session) { server.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) { testSessionEndReleasesBlockedStreams(t, tc.end) })
	}
}

func testSessionEndReleasesBlockedStreams(t *testing.T, end func(client, server *Session)) {
	const (
		readers = 5000
		writers = 100 // of the readers' streams, also blocked writing

		// Generous for a loaded machine under the race detector: the
		// fixed session takes tens of milliseconds; upstream's spinning
		// took minutes of CPU.
		maxWall = 20 * time.Second
		maxCPU  = 10 * time.Second
	)
	conf := testConfNoKeepAlive()
	conf.AcceptBacklog = readers
	conf.MaxIncomingStreams = readers
	conf.LogOutput = io.Discard
	clientConn, serverConn := testConnTCP(t)
	client, server := testClientServerConfig(t, clientConn, serverConn, conf, conf.Clone())

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results = map[string]int{} // what the blocked calls returned
	)
	record := func(what string, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			results[what+": nil"]++
		case errors.Is(err, ErrSessionShutdown):
			results[what+": ErrSessionShutdown"]++
		default:
			results[what+": "+err.Error()]++
		}
	}
	accepted := make(chan *Stream, readers)
	go func() {
		for range readers {
			s, err := server.AcceptStream()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- s
		}
		close(accepted)
	}()
	for range readers {
		if _, err := client.OpenStream(); err != nil {
			t.Fatal(err)
		}
	}
	var streams []*Stream
	for s := range accepted {
		streams = append(streams, s)
	}
	if len(streams) != readers {
		t.Fatalf("accepted %d streams, want %d", len(streams), readers)
	}
	for i, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Read(make([]byte, 1024))
			record("read", err)
		}()
		if i < writers {
			// More than a window: the client reads nothing, so the
			// write blocks once the window is used up.
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.Write(make([]byte, 2*initialStreamWindow))
				record("write", err)
			}()
		}
	}
	waitUntil(t, "the reads and writes to block", func() bool {
		blocked := 0
		for i, s := range streams {
			s.recvLock.Lock()
			if s.readWait != nil {
				blocked++
			}
			s.recvLock.Unlock()
			if i < writers && atomic.LoadUint32(&s.sendWindow) == 0 {
				blocked++
			}
		}
		return blocked == readers+writers
	})

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	cpu0, start := cpuTime(t), time.Now()
	end(client, server)
	select {
	case <-done:
	case <-time.After(hangTimeout):
		t.Fatalf("the blocked calls had not all returned after %v", hangTimeout)
	}
	wall, cpu := time.Since(start), cpuTime(t)-cpu0
	t.Logf("%d blocked reads and %d writes returned in %v, using %v of CPU", readers, writers, wall, cpu)

	if wall > maxWall || cpu > maxCPU {
		t.Errorf("took %v and %v of CPU, want at most %v and %v", wall, cpu, maxWall, maxCPU)
	}
	want := map[string]int{"read: ErrSessionShutdown": readers, "write: ErrSessionShutdown": writers}
	if len(results) != len(want) || results["read: ErrSessionShutdown"] != readers || results["write: ErrSessionShutdown"] != writers {
		t.Errorf("the blocked calls returned %v, want %v", results, want)
	}
}

// TestSessionEndKeepsCleanEnds: after the session's end, a stream that
// was closed cleanly in one direction keeps reporting that direction's
// clean end (io.EOF, ErrStreamClosed), and the directions it cut off
// report ErrSessionShutdown, after the data that had arrived.
func TestSessionEndKeepsCleanEnds(t *testing.T) {
	clientConn, serverConn := testConnPipe(t)
	client, server := testClientServerConfig(t, clientConn, serverConn, testConfNoKeepAlive(), testConfNoKeepAlive())
	open := func() (c, s *Stream) {
		t.Helper()
		c, err := client.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("abc")); err != nil {
			t.Fatal(err)
		}
		s, err = server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	cFIN, sPeerClosed := open() // the client closes: the server's reads end
	_, sClosed := open()        // the server closes: its writes end
	_, sOpen := open()          // open both ways
	if err := cFIN.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sClosed.Close(); err != nil {
		t.Fatal(err)
	}
	// The server has processed the FIN when it answers a ping sent after.
	if _, err := client.Ping(); err != nil {
		t.Fatal(err)
	}
	server.Close() // returns once it has force-closed every stream

	readAll := func(s *Stream) (string, error) {
		b, err := io.ReadAll(s)
		return string(b), err
	}
	for _, c := range []struct {
		name        string
		s           *Stream
		read, write error // io.ReadAll turns io.EOF into nil
	}{
		{"closed by the peer", sPeerClosed, nil, ErrSessionShutdown},
		{"closed by this side", sClosed, ErrSessionShutdown, ErrStreamClosed},
		{"open", sOpen, ErrSessionShutdown, ErrSessionShutdown},
	} {
		got, err := readAll(c.s)
		if got != "abc" || !errors.Is(err, c.read) {
			t.Errorf("%s: read %q, %v; want \"abc\", %v", c.name, got, err, c.read)
		}
		if _, err := c.s.Write([]byte("x")); !errors.Is(err, c.write) {
			t.Errorf("%s: write: %v, want %v", c.name, err, c.write)
		}
	}
}

// TestWritersGivingUpAtShutdown closes a session while many streams write
// as fast as the peer reads. A writer whose frame is still queued when the
// session ends replaces its body with a copy, and the send loop, which may
// go on gathering queued frames for a last write, must not read the body
// meanwhile: the race detector caught it sizing a batch from the body.
func TestWritersGivingUpAtShutdown(t *testing.T) {
	for range 10 {
		c, s := testConnTCP(t)
		client, server := testClientServerConfig(t, c, s, testConfNoKeepAlive(), testConfNoKeepAlive())
		go func() {
			for {
				st, err := server.AcceptStream()
				if err != nil {
					return
				}
				go io.Copy(io.Discard, st)
			}
		}()
		var wg sync.WaitGroup
		started := make(chan struct{}, 64)
		for range 64 {
			st, err := client.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				buf := make([]byte, 4096)
				started <- struct{}{}
				for {
					if _, err := st.Write(buf); err != nil {
						return
					}
				}
			})
		}
		for range 64 {
			<-started
		}
		client.Close()
		wg.Wait()
	}
}
