package yamux

// Tests of the changes this copy makes to upstream yamux (see FORK.md):
// data delivered straight into a waiting reader's buffer, bodies written
// without a copy, queued frames batched into one write, and reads that
// keep what arrived when a window update cannot be sent.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// partsConn is a connection that implements frameWriter and records the
// number of parts of each write. A stalled partsConn holds its next write
// until release.
type partsConn struct {
	net.Conn

	mu      sync.Mutex
	writes  []int
	stalled chan struct{}
	entered chan struct{}
}

func (c *partsConn) WriteParts(parts [][]byte) error {
	c.mu.Lock()
	stalled := c.stalled
	c.stalled = nil
	c.writes = append(c.writes, len(parts))
	c.mu.Unlock()
	if stalled != nil {
		close(c.entered)
		<-stalled
	}
	for _, p := range parts {
		if _, err := c.Conn.Write(p); err != nil {
			return err
		}
	}
	return nil
}

func (c *partsConn) stall() (entered <-chan struct{}, release func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	stalled := make(chan struct{})
	c.stalled = stalled
	c.entered = make(chan struct{})
	return c.entered, func() { close(stalled) }
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	c, s := testConnTCP(t)
	return c.(net.Conn), s.(net.Conn)
}

// TestQueuedFramesLeaveInOneWrite stalls the connection in a write, queues
// frames from several streams behind it, and checks that the next write
// carries all of them, and that they arrive intact.
func TestQueuedFramesLeaveInOneWrite(t *testing.T) {
	cc, sc := tcpPair(t)
	pc := &partsConn{Conn: cc}
	client, server := testClientServerConfig(t, pc, sc, testConfNoKeepAlive(), testConfNoKeepAlive())

	const streams = 8
	var opened []*Stream
	for range streams + 1 { // the last one sends a large frame
		s, err := client.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte("open")); err != nil {
			t.Fatal(err)
		}
		opened = append(opened, s)
	}
	accepted := make([]*Stream, streams+1)
	for range streams + 1 {
		s, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err != nil {
			t.Fatal(err)
		}
		accepted[s.StreamID()/2] = s
	}

	// A ping is written by the send loop and held there.
	entered, release := pc.stall()
	pingDone := make(chan error, 1)
	go func() { _, err := client.Ping(); pingDone <- err }()
	<-entered
	pc.mu.Lock()
	next := len(pc.writes) // the index of the write after the stalled one
	pc.mu.Unlock()

	big := opened[streams]
	var wg sync.WaitGroup
	for i, s := range opened[:streams] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Write(bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
				t.Error(err)
			}
		}()
	}
	// Wait until every stream's frame is queued behind the stalled write.
	waitUntil(t, "the frames to queue", func() bool { return len(client.sendCh) == streams })
	// Then a frame too large to join them: it must go alone, after them.
	bigData := bytes.Repeat([]byte("b"), batchBytes)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := big.Write(bigData); err != nil {
			t.Error(err)
		}
	}()
	waitUntil(t, "the large frame to queue", func() bool { return len(client.sendCh) == streams+1 })
	release()
	wg.Wait()
	if err := <-pingDone; err != nil {
		t.Fatal(err)
	}
	// The first write after the stall carried the eight data frames, a
	// header and a body each; the large frame came next, alone.
	pc.mu.Lock()
	batch, after := pc.writes[next], pc.writes[next+1]
	pc.mu.Unlock()
	if batch != 2*streams || after != 2 {
		t.Fatalf("writes after the stall had %d and %d parts, want %d and 2", batch, after, 2*streams)
	}
	for i, s := range accepted[:streams] {
		got := make([]byte, 100)
		if _, err := io.ReadFull(s, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, 100)) {
			t.Fatalf("stream %d got %v...", i, got[:8])
		}
	}
}

// TestReadsStraightIntoWaitingReader checks that data for a blocked Read
// lands in its buffer, in order, whatever the sizes of frames and reads,
// including reads that time out while data arrives.
func TestReadsStraightIntoWaitingReader(t *testing.T) {
	client, server := testClientServer(t)
	for _, tc := range []struct {
		name      string
		write     int // bytes per Write (a frame is at most a window)
		read      int // bytes per Read
		deadlines bool
	}{
		{"small reads", 64 << 10, 1000, false},
		{"large reads", 100, 1 << 20, false},
		{"frame larger than read", 512 << 10, 100 << 10, false},
		{"deadlines", 3000, 7000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, 8<<20)
			for i := range data {
				data[i] = byte(i*131 + i>>11)
			}
			want := sha256.Sum256(data)
			wErr := make(chan error, 1)
			go func() {
				s, err := client.OpenStream()
				if err != nil {
					wErr <- err
					return
				}
				defer s.Close()
				for p := data; len(p) > 0; {
					n := tc.write
					if n > len(p) {
						n = len(p)
					}
					if _, err := s.Write(p[:n]); err != nil {
						wErr <- err
						return
					}
					p = p[n:]
				}
				wErr <- nil
			}()
			s, err := server.AcceptStream()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			h := sha256.New()
			buf := make([]byte, tc.read)
			var timeouts int
			for {
				if tc.deadlines {
					s.SetReadDeadline(time.Now().Add(50 * time.Microsecond))
				}
				n, err := s.Read(buf)
				h.Write(buf[:n])
				if errors.Is(err, ErrTimeout) {
					timeouts++
					continue
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := <-wErr; err != nil {
				t.Fatal(err)
			}
			if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
				t.Fatalf("data differs (%d timeouts)", timeouts)
			}
		})
	}
}

// TestConcurrentReadersShareAStream checks that two goroutines reading one
// stream get every byte exactly once between them.
func TestConcurrentReadersShareAStream(t *testing.T) {
	client, server := testClientServer(t)
	const total = 4 << 20
	go func() {
		s, err := client.OpenStream()
		if err != nil {
			return
		}
		defer s.Close()
		chunk := bytes.Repeat([]byte{1}, 32<<10)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := s.Write(chunk); err != nil {
				return
			}
		}
	}()
	s, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		sum int
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 10000)
			for {
				n, err := s.Read(buf)
				mu.Lock()
				for _, b := range buf[:n] {
					sum += int(b)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if sum != total {
		t.Fatalf("read %d bytes, want %d", sum, total)
	}
}

// TestWaitingReaderBypassesRecvBuf checks that a payload for a blocked
// Read does not pass through the stream's receive buffer.
func TestWaitingReaderBypassesRecvBuf(t *testing.T) {
	client, server := testClientServer(t)
	cs, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	ss, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	one := make([]byte, 1)
	if _, err := io.ReadFull(ss, one); err != nil {
		t.Fatal(err)
	}
	ss.recvLock.Lock()
	ss.recvBuf = nil // allocated by the first frame, which nobody waited for
	ss.recvLock.Unlock()

	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	buf := make([]byte, 1<<20)
	go func() {
		n, err := ss.Read(buf)
		done <- result{n, err}
	}()
	waitUntil(t, "the read to block", func() bool {
		ss.recvLock.Lock()
		defer ss.recvLock.Unlock()
		return ss.readWait != nil
	})
	payload := bytes.Repeat([]byte("tunnel"), 10000)
	if _, err := cs.Write(payload); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || !bytes.Equal(buf[:r.n], payload) {
		t.Fatalf("read %d bytes, %v", r.n, r.err)
	}
	ss.recvLock.Lock()
	defer ss.recvLock.Unlock()
	if ss.recvBuf != nil {
		t.Fatalf("the payload went through recvBuf (%d bytes buffered)", ss.recvBuf.Len())
	}
}

// selfBuffered marks a connection as one that buffers its own reads.
type selfBuffered struct{ net.Conn }

func (selfBuffered) ReadIsBuffered() bool { return true }

// TestBufferedConnIsReadDirectly: the receive loop reads a connection that
// buffers its own reads without a bufio.Reader in front (one copy fewer per
// byte), other connections through one, and both carry streams.
func TestBufferedConnIsReadDirectly(t *testing.T) {
	c1, c2 := net.Pipe()
	server, err := Server(selfBuffered{c2}, testConf())
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client, err := Client(c1, testConf())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, ok := server.bufRead.(selfBuffered); !ok {
		t.Errorf("server reads through %T, want the connection itself", server.bufRead)
	}
	if _, ok := client.bufRead.(*bufio.Reader); !ok {
		t.Errorf("client reads through %T, want a bufio.Reader", client.bufRead)
	}

	data := bytes.Repeat([]byte("0123456789"), 100_000)
	go func() {
		s, err := client.OpenStream()
		if err != nil {
			return
		}
		s.Write(data)
		s.Close()
	}()
	s, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d of %d bytes: %v", len(got), len(data), err)
	}
}

// breakableConn is a connection whose writes can be made to fail while its
// reads go on, as when the peer has gone away but its last bytes are still
// being read.
type breakableConn struct {
	io.ReadWriteCloser
	broken atomic.Bool
}

var errBrokenWrite = errors.New("write on a broken connection")

func (c *breakableConn) Write(p []byte) (int, error) {
	if c.broken.Load() {
		return 0, errBrokenWrite
	}
	return c.ReadWriteCloser.Write(p)
}

// TestReadKeepsDataWhenWindowUpdateFails: the peer sent a window's worth
// and closed the stream, and then the connection breaks. Reading the
// stream sends a window update, which fails and ends the session; every
// byte that had arrived must still be read, then EOF. Upstream returned
// the failed write's error from the Read that sent the update, so a
// reader such as io.ReadAll stopped with the rest of the data unread.
func TestReadKeepsDataWhenWindowUpdateFails(t *testing.T) {
	c1, c2 := testConnPipe(t)
	conf := testConfNoKeepAlive()
	conf.LogOutput = io.Discard
	client, err := Client(c1, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sconn := &breakableConn{ReadWriteCloser: c2}
	server, err := Server(sconn, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	data := make([]byte, conf.MaxStreamWindowSize)
	for i := range data {
		data[i] = byte(i * 13)
	}
	cs, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	ss, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	// The server answers the ping after it has read the data and the FIN.
	if _, err := client.Ping(); err != nil {
		t.Fatal(err)
	}
	sconn.broken.Store(true)

	got, err := io.ReadAll(ss)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d of %d bytes, %v; want all of them and EOF", len(got), len(data), err)
	}
	select {
	case <-server.CloseChan():
	case <-time.After(10 * time.Second):
		t.Fatal("the failed window update did not end the session")
	}
}

// TestDeadlinesCostNoAllocation pins that setting a stream's deadlines
// allocates nothing (net/http sets them several times per request), and
// that a deadline already past ends a blocked Read at once, as net/http's
// server does to stop its background read, after which clearing it lets
// the stream be read again.
func TestDeadlinesCostNoAllocation(t *testing.T) {
	client, server := testClientServer(t)
	stream, err := client.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if _, err := stream.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	peer, err := server.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	future := time.Now().Add(time.Hour)
	if n := testing.AllocsPerRun(100, func() {
		stream.SetDeadline(future)
		stream.SetDeadline(time.Time{})
	}); n != 0 {
		t.Errorf("setting deadlines: %v allocations, want 0", n)
	}

	errCh := make(chan error, 1)
	go func() {
		_, err := stream.Read(make([]byte, 4))
		errCh <- err
	}()
	st := stream.(*Stream)
	waitUntil(t, "the read to block", func() bool {
		st.recvLock.Lock()
		defer st.recvLock.Unlock()
		return st.readWait != nil
	})
	stream.SetReadDeadline(time.Unix(1, 0))
	select {
	case err := <-errCh:
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("Read after a past deadline: %v, want ErrTimeout", err)
		}
	case <-time.After(hangTimeout):
		t.Fatal("a deadline in the past did not end the blocked Read")
	}

	stream.SetReadDeadline(time.Time{})
	if _, err := peer.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	n, err := stream.Read(buf)
	if err != nil || string(buf[:n]) != "ok" {
		t.Fatalf("Read after the deadline was cleared: %q, %v", buf[:n], err)
	}
}

// TestFramesReuseTheirSendReady pins that a stream hands each of its data
// frames to the send loop in the same sendReady (one per frame was an
// allocation per frame), and that the frames still arrive intact.
func TestFramesReuseTheirSendReady(t *testing.T) {
	client, server := testClientServer(t)
	stream, err := client.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	st := stream.(*Stream)
	if _, err := stream.Write([]byte("first ")); err != nil {
		t.Fatal(err)
	}
	first := st.sendRdy
	if first == nil {
		t.Fatal("no sendReady kept after a write")
	}
	if _, err := stream.Write([]byte("second")); err != nil {
		t.Fatal(err)
	}
	if st.sendRdy != first {
		t.Error("the second frame went out in a new sendReady")
	}
	peer, err := server.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	buf := make([]byte, len("first second"))
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "first second" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
}
