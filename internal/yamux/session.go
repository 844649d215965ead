package yamux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Session is used to wrap a reliable ordered connection and to
// multiplex it into multiple streams.
type Session struct {
	// remoteGoAway indicates the remote side does
	// not want futher connections. Must be first for alignment.
	remoteGoAway int32

	// goAwayCh is closed when the remote side sends a normal GoAway.
	goAwayCh chan struct{}

	// localGoAway indicates that we should stop
	// accepting futher connections. Must be first for alignment.
	localGoAway int32

	// nextStreamID is the next stream we should
	// send. This depends if we are a client/server.
	nextStreamID uint32

	// client is whether this is the client's side: its streams have odd
	// IDs, the server's even ones.
	client bool

	// config holds our configuration
	config *Config

	// logger is used for our logs
	logger Logger

	// conn is the underlying connection
	conn io.ReadWriteCloser

	// bufRead is a buffered reader: conn itself when it buffers its reads
	// (see bufferedConn), else a bufio.Reader over it.
	bufRead io.Reader

	// pings is used to track inflight pings
	pings    map[uint32]chan struct{}
	pingID   uint32
	pingLock sync.Mutex

	// pongs holds the answers to the peer's pings until the send loop
	// writes them.
	pongs *pongQueue

	// streams maps a stream id to a stream, and inflight has an entry
	// for any outgoing stream that has not yet been established. Both are
	// protected by streamLock.
	streams    map[uint32]*Stream
	inflight   map[uint32]struct{}
	streamLock sync.Mutex

	// numIncoming counts the streams in streams that the peer opened, and
	// numOutgoing those this side opened or is opening; maxIncoming is the
	// bound of the first (Config.MaxIncomingStreams or its default).
	// Protected by streamLock.
	numIncoming, numOutgoing int
	maxIncoming              int
	// incomingTotal counts every stream the peer opened that went into
	// the accept backlog (IncomingStreams).
	incomingTotal atomic.Uint64

	// synCh acts like a semaphore. It is sized to the AcceptBacklog which
	// is assumed to be symmetric between the client and server. This allows
	// the client to avoid exceeding the backlog and instead blocks the open.
	synCh chan struct{}

	// acceptCh is used to pass ready streams to the client
	acceptCh chan *Stream

	// sendCh is used to mark a stream as ready to send,
	// or to send a header out directly.
	sendCh chan *sendReady

	// recvDoneCh is closed when recv() exits to avoid a race
	// between stream registration and stream shutdown
	recvDoneCh chan struct{}
	sendDoneCh chan struct{}

	// shutdown is used to safely close a session
	shutdown        bool
	shutdownErr     error
	shutdownCh      chan struct{}
	shutdownLock    sync.Mutex
	shutdownErrLock sync.Mutex
}

// sendReady is used to either mark a stream as ready
// or to directly send a header
type sendReady struct {
	Hdr  []byte
	mu   sync.Mutex // Protects Body from unsafe reads.
	Body []byte
	Err  chan error
	// size is len(Hdr)+len(Body) as queued, read by the send loop to
	// fill a batch before it takes mu: a sender that gives up replaces
	// Body (with a copy as long) under mu.
	size int
}

// newSession is used to construct a new session
func newSession(config *Config, conn io.ReadWriteCloser, client bool) *Session {
	logger := config.Logger
	if logger == nil {
		logger = log.New(config.LogOutput, "", log.LstdFlags)
	}

	s := &Session{
		config:     config,
		logger:     logger,
		conn:       conn,
		bufRead:    recvReader(conn),
		client:     client,
		pings:      make(map[uint32]chan struct{}),
		pongs:      new(pongQueue),
		streams:    make(map[uint32]*Stream),
		inflight:   make(map[uint32]struct{}),
		synCh:      make(chan struct{}, config.AcceptBacklog),
		acceptCh:   make(chan *Stream, config.AcceptBacklog),
		sendCh:     make(chan *sendReady, 64),
		recvDoneCh: make(chan struct{}),
		sendDoneCh: make(chan struct{}),
		shutdownCh: make(chan struct{}),
		goAwayCh:   make(chan struct{}),

		maxIncoming: config.MaxIncomingStreams,
	}
	if s.maxIncoming == 0 {
		s.maxIncoming = DefaultMaxIncomingStreams
	}
	if client {
		s.nextStreamID = 1
	} else {
		s.nextStreamID = 2
	}
	go s.recv()
	go s.send()
	if config.EnableKeepAlive {
		go s.keepalive()
	}
	return s
}

// IsClosed does a safe check to see if we have shutdown
func (s *Session) IsClosed() bool {
	select {
	case <-s.shutdownCh:
		return true
	default:
		return false
	}
}

// CloseChan returns a read-only channel which is closed as
// soon as the session is closed.
func (s *Session) CloseChan() <-chan struct{} {
	return s.shutdownCh
}

// Err returns nil while the session is open, and once it has ended, why:
// ErrSessionShutdown if Close ended it, else the error that did, such as
// ErrTooManyStreams or ErrInvalidStreamID (the peer misbehaved),
// ErrKeepAliveTimeout, or the connection's error (io.EOF when the peer
// closed it). Match it with errors.Is.
func (s *Session) Err() error {
	select {
	case <-s.shutdownCh:
	default:
		return nil
	}
	s.shutdownErrLock.Lock()
	defer s.shutdownErrLock.Unlock()
	return s.shutdownErr
}

// IncomingStreams returns how many streams the peer has opened that the
// session took into its accept backlog since it began. The receive loop
// handles frames in order, so once a frame has been read (on any stream),
// the count includes every stream the peer opened before sending it: a
// peer's "I will open no more" message tells the caller how many streams
// AcceptStream has yet to return.
func (s *Session) IncomingStreams() uint64 { return s.incomingTotal.Load() }

// NumStreams returns the number of currently open streams
func (s *Session) NumStreams() int {
	s.streamLock.Lock()
	num := len(s.streams)
	s.streamLock.Unlock()
	return num
}

// Open is used to create a new stream as a net.Conn
func (s *Session) Open() (net.Conn, error) {
	conn, err := s.OpenStream()
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// OpenStream is used to create a new stream
func (s *Session) OpenStream() (*Stream, error) {
	if s.IsClosed() {
		return nil, ErrSessionShutdown
	}
	if atomic.LoadInt32(&s.remoteGoAway) == 1 {
		return nil, ErrRemoteGoAway
	}

	// Take a place among this side's streams: closeStream gives it back.
	s.streamLock.Lock()
	if max := s.config.MaxOutgoingStreams; max > 0 && s.numOutgoing >= max {
		s.streamLock.Unlock()
		return nil, ErrStreamLimit
	}
	s.numOutgoing++
	s.streamLock.Unlock()
	unreserve := func() {
		s.streamLock.Lock()
		s.numOutgoing--
		s.streamLock.Unlock()
	}

	// Block if we have too many inflight SYNs
	select {
	case s.synCh <- struct{}{}:
	case <-s.shutdownCh:
		unreserve()
		return nil, ErrSessionShutdown
	}

GET_ID:
	// Get an ID, and check for stream exhaustion
	id := atomic.LoadUint32(&s.nextStreamID)
	if id >= math.MaxUint32-1 {
		<-s.synCh
		unreserve()
		return nil, ErrStreamsExhausted
	}
	if !atomic.CompareAndSwapUint32(&s.nextStreamID, id, id+2) {
		goto GET_ID
	}

	// Register the stream
	stream := newStream(s, id, streamInit)
	s.streamLock.Lock()
	s.streams[id] = stream
	s.inflight[id] = struct{}{}
	s.streamLock.Unlock()

	if s.config.StreamOpenTimeout > 0 {
		go s.setOpenTimeout(stream)
	}

	// Send the window update to create
	if err := stream.sendWindowUpdate(); err != nil {
		// Forget the stream, which gives back its SYN semaphore and its
		// place among this side's streams; upstream gave back the
		// semaphore and left the stream registered. If the SYN may
		// still go out (it waited past the write timeout), a RST
		// follows it.
		if s.IsClosed() {
			s.closeStream(id)
		} else {
			stream.closeTimeout()
		}
		return nil, err
	}
	return stream, nil
}

// setOpenTimeout implements a timeout for streams that are opened but not established.
// If the StreamOpenTimeout is exceeded we assume the peer is unable to ACK,
// and close the session.
// The number of running timers is bounded by the capacity of the synCh.
func (s *Session) setOpenTimeout(stream *Stream) {
	timer := time.NewTimer(s.config.StreamOpenTimeout)
	defer timer.Stop()

	select {
	case <-stream.establishCh:
		return
	case <-s.shutdownCh:
		return
	case <-timer.C:
		// Timeout reached while waiting for ACK.
		// Close the session to force connection re-establishment.
		s.logger.Printf("[ERR] yamux: aborted stream open (destination=%s): %v", s.RemoteAddr().String(), ErrTimeout.err)
		s.Close()
	}
}

// Accept is used to block until the next available stream
// is ready to be accepted.
func (s *Session) Accept() (net.Conn, error) {
	conn, err := s.AcceptStream()
	if err != nil {
		return nil, err
	}
	return conn, err
}

// AcceptStream is used to block until the next available stream
// is ready to be accepted.
func (s *Session) AcceptStream() (*Stream, error) {
	select {
	case stream := <-s.acceptCh:
		if err := stream.sendWindowUpdate(); err != nil {
			return nil, err
		}
		return stream, nil
	case <-s.shutdownCh:
		return nil, s.shutdownErr
	}
}

// AcceptStream is used to block until the next available stream
// is ready to be accepted.
func (s *Session) AcceptStreamWithContext(ctx context.Context) (*Stream, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case stream := <-s.acceptCh:
		if err := stream.sendWindowUpdate(); err != nil {
			return nil, err
		}
		return stream, nil
	case <-s.shutdownCh:
		return nil, s.shutdownErr
	}
}

// Close is used to close the session and all streams.
// Attempts to send a GoAway before closing the connection.
func (s *Session) Close() error {
	s.shutdownLock.Lock()
	defer s.shutdownLock.Unlock()

	if s.shutdown {
		return nil
	}
	s.shutdown = true

	s.shutdownErrLock.Lock()
	if s.shutdownErr == nil {
		s.shutdownErr = ErrSessionShutdown
	}
	s.shutdownErrLock.Unlock()

	close(s.shutdownCh)

	s.conn.Close()
	<-s.recvDoneCh

	s.streamLock.Lock()
	defer s.streamLock.Unlock()
	for _, stream := range s.streams {
		stream.forceClose(ErrSessionShutdown)
	}
	<-s.sendDoneCh
	return nil
}

// exitErr is used to handle an error that is causing the
// session to terminate.
func (s *Session) exitErr(err error) {
	s.shutdownErrLock.Lock()
	if s.shutdownErr == nil {
		s.shutdownErr = err
	}
	s.shutdownErrLock.Unlock()
	s.Close()
}

// GoAway can be used to prevent accepting further
// connections. It does not close the underlying conn.
func (s *Session) GoAway() error {
	return s.waitForSend(s.goAway(goAwayNormal), nil)
}

// goAway is used to send a goAway message
func (s *Session) goAway(reason uint32) header {
	atomic.SwapInt32(&s.localGoAway, 1)
	hdr := header(make([]byte, headerSize))
	hdr.encode(typeGoAway, 0, 0, reason)
	return hdr
}

// Ping is used to measure the RTT response time
func (s *Session) Ping() (time.Duration, error) {
	// Get a channel for the ping
	ch := make(chan struct{})

	// Get a new ping id, mark as pending
	s.pingLock.Lock()
	id := s.pingID
	s.pingID++
	s.pings[id] = ch
	s.pingLock.Unlock()

	// Send the ping request
	hdr := header(make([]byte, headerSize))
	hdr.encode(typePing, flagSYN, 0, id)
	if err := s.waitForSend(hdr, nil); err != nil {
		return 0, err
	}

	// Wait for a response
	start := time.Now()
	select {
	case <-ch:
	case <-time.After(s.config.ConnectionWriteTimeout):
		s.pingLock.Lock()
		delete(s.pings, id) // Ignore it if a response comes later.
		s.pingLock.Unlock()
		return 0, ErrTimeout
	case <-s.shutdownCh:
		return 0, ErrSessionShutdown
	}

	// Compute the RTT
	rtt := time.Since(start)
	s.shrinkStreams()
	return rtt, nil
}

// shrinkStreams drops the receive buffers that streams have emptied
// (Stream.Shrink). Ping calls it, so it runs once per keepalive or
// heartbeat: a stream kept idle in a connection pool after a large body
// otherwise holds its buffer, up to the stream window, until it closes.
// A stream that needs a buffer again grows a new one.
func (s *Session) shrinkStreams() {
	s.streamLock.Lock()
	streams := make([]*Stream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	s.streamLock.Unlock()
	for _, st := range streams {
		st.Shrink()
	}
}

// keepalive is a long running goroutine that periodically does
// a ping to keep the connection alive.
func (s *Session) keepalive() {
	for {
		select {
		case <-time.After(s.config.KeepAliveInterval):
			_, err := s.Ping()
			if err != nil {
				if !errors.Is(err, ErrSessionShutdown) {
					s.logger.Printf("[ERR] yamux: keepalive failed: %v", err)
					s.exitErr(ErrKeepAliveTimeout)
				}
				return
			}
		case <-s.shutdownCh:
			return
		}
	}
}

// waitForSendErr waits to send a header, checking for a potential shutdown
func (s *Session) waitForSend(hdr header, body []byte) error {
	return s.waitForSendErr(hdr, body, &sendReady{Err: make(chan error, 1)})
}

// waitForSendErr waits to send a header with optional data, checking for a
// potential shutdown. Since there's the expectation that sends can happen
// in a timely manner, we enforce the connection write timeout here.
//
// ready carries the frame to the send loop, and ready.Err its result. A
// stream passes the same one for each of its frames of a kind (a
// sendReady per frame was an allocation per frame); it may do so after
// this returned nil or a write error, when the send loop is done with
// it, but never after ErrSessionShutdown or ErrConnectionWriteTimeout,
// when the frame may still be queued.
func (s *Session) waitForSendErr(hdr header, body []byte, ready *sendReady) error {
	t := timerPool.Get()
	timer := t.(*time.Timer)
	timer.Reset(s.config.ConnectionWriteTimeout)
	defer func() {
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
		timerPool.Put(t)
	}()

	ready.Hdr, ready.Body, ready.size = hdr, body, len(hdr)+len(body)
	errCh := ready.Err
	select {
	case s.sendCh <- ready:
	case <-s.shutdownCh:
		return ErrSessionShutdown
	case <-timer.C:
		return ErrConnectionWriteTimeout
	}

	bodyCopy := func() {
		if body == nil {
			return // A nil body is ignored.
		}

		// In the event of session shutdown or connection write timeout,
		// we need to prevent `send` from reading the body buffer after
		// returning from this function since the caller may re-use the
		// underlying array.
		if !ready.mu.TryLock() {
			// The send loop is writing the body, straight from the
			// caller's buffer, and has been for as long as the write
			// timeout: the connection is dead. Closing the session
			// closes the connection, which ends the write.
			s.exitErr(ErrConnectionWriteTimeout)
			ready.mu.Lock()
		}
		defer ready.mu.Unlock()

		if ready.Body == nil {
			return // Body was already copied in `send`.
		}
		newBody := make([]byte, len(body))
		copy(newBody, body)
		ready.Body = newBody
	}

	select {
	case err := <-errCh:
		return err
	case <-s.shutdownCh:
		bodyCopy()
		return ErrSessionShutdown
	case <-timer.C:
		bodyCopy()
		return ErrConnectionWriteTimeout
	}
}

// sendNoWait does a send without waiting. Since there's the expectation that
// the send happens right here, we enforce the connection write timeout if we
// can't queue the header to be sent.
func (s *Session) sendNoWait(hdr header) error {
	t := timerPool.Get()
	timer := t.(*time.Timer)
	timer.Reset(s.config.ConnectionWriteTimeout)
	defer func() {
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
		timerPool.Put(t)
	}()

	select {
	case s.sendCh <- &sendReady{Hdr: hdr, size: len(hdr)}:
		return nil
	case <-s.shutdownCh:
		return ErrSessionShutdown
	case <-timer.C:
		return ErrConnectionWriteTimeout
	}
}

// send is a long running goroutine that sends data
func (s *Session) send() {
	if err := s.sendLoop(); err != nil {
		s.exitErr(err)
	}
}

func (s *Session) sendLoop() error {
	defer close(s.sendDoneCh)
	fw, _ := s.conn.(frameWriter)
	var (
		batch []*sendReady
		parts [][]byte
		held  *sendReady // taken from sendCh but too big for the last batch
		pongs = make([]byte, 0, maxPendingPongs*headerSize)
	)
	for {
		ready := held
		held = nil
		if ready == nil {
			select {
			case ready = <-s.sendCh:
			case <-s.shutdownCh:
				return nil
			}
		}
		if ready == pongWake {
			s.pongs.waking.Store(false) // before take, which follows
			ready = nil
		}
		// Frames already queued behind this one go out with it, in
		// one write: under load that is one system call (and one
		// WebSocket message) for many small frames. Nothing waits
		// for a batch to fill, and a batch stays under batchBytes
		// unless its first frame alone is larger.
		batch = batch[:0]
		size := 0
		if ready != nil {
			batch = append(batch, ready)
			size = ready.size
		}
	gather:
		for size < batchBytes && len(batch) < cap(s.sendCh) {
			select {
			case r := <-s.sendCh:
				if r == pongWake {
					s.pongs.waking.Store(false)
					continue
				}
				n := r.size
				if size+n > batchBytes {
					held = r
					break gather
				}
				batch = append(batch, r)
				size += n
			default:
				break gather
			}
		}

		// Answers to pings go first: a keepalive is answered however
		// full the send queue.
		parts = parts[:0]
		if pongs = s.pongs.take(pongs[:0]); len(pongs) > 0 {
			parts = append(parts, pongs)
		}
		if len(parts) == 0 && len(batch) == 0 {
			continue // woken for answers another batch took
		}

		// Bodies are written straight from the senders' slices, under
		// each sendReady's mu: a sender that gives up waiting (write
		// timeout or shutdown) takes that lock to copy its body, so
		// it cannot return, and reuse its buffer, while the body is
		// being written. Upstream yamux copies every body instead.
		for _, r := range batch {
			r.mu.Lock()
			if r.Hdr != nil {
				parts = append(parts, r.Hdr)
			}
			if len(r.Body) > 0 {
				parts = append(parts, r.Body)
			}
		}
		err := s.writeParts(fw, parts)
		for _, r := range batch {
			r.Body = nil
			r.mu.Unlock()
		}
		clear(parts)
		if err != nil {
			s.logger.Printf("[ERR] yamux: Failed to write frame: %v", err)
			for _, r := range batch {
				asyncSendErr(r.Err, err)
			}
			return err
		}

		// No error, successful send
		for _, r := range batch {
			asyncSendErr(r.Err, nil)
		}
		clear(batch)
	}
}

// batchBytes is the size past which the send loop stops adding queued
// frames to a write.
const batchBytes = 64 << 10

// frameWriter is implemented by connections that can send several byte
// slices in one write (one WebSocket message, one system call).
type frameWriter interface {
	WriteParts(parts [][]byte) error
}

func (s *Session) writeParts(fw frameWriter, parts [][]byte) error {
	if fw != nil {
		return fw.WriteParts(parts)
	}
	for _, p := range parts {
		if _, err := s.conn.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// recv is a long running goroutine that accepts new data
func (s *Session) recv() {
	if err := s.recvLoop(); err != nil {
		s.exitErr(err)
	}
}

// Ensure that the index of the handler (typeData/typeWindowUpdate/etc) matches the message type
var (
	handlers = []func(*Session, header) error{
		typeData:         (*Session).handleStreamMessage,
		typeWindowUpdate: (*Session).handleStreamMessage,
		typePing:         (*Session).handlePing,
		typeGoAway:       (*Session).handleGoAway,
	}
)

// recvLoop continues to receive data until a fatal error is encountered
func (s *Session) recvLoop() error {
	defer close(s.recvDoneCh)
	hdr := header(make([]byte, headerSize))
	for {
		// Read the header
		if _, err := io.ReadFull(s.bufRead, hdr); err != nil {
			if !connEnded(err) {
				s.logger.Printf("[ERR] yamux: Failed to read header: %v", err)
			}
			return err
		}

		// Verify the version
		if hdr.Version() != protoVersion {
			s.logger.Printf("[ERR] yamux: Invalid protocol version: %d", hdr.Version())
			return ErrInvalidVersion
		}

		mt := hdr.MsgType()
		if mt < typeData || mt > typeGoAway {
			return ErrInvalidMsgType
		}

		if err := handlers[mt](s, hdr); err != nil {
			return err
		}
	}
}

// handleStreamMessage handles either a data or window update frame
func (s *Session) handleStreamMessage(hdr header) error {
	// No stream's window exceeds MaxStreamWindowSize, so neither does a
	// data frame of a peer that keeps to the windows, even one for a
	// stream this side has forgotten. Upstream read and discarded
	// frames of any length for unknown streams.
	if hdr.MsgType() == typeData && hdr.Length() > s.config.MaxStreamWindowSize {
		s.logger.Printf("[ERR] yamux: data frame of %d bytes exceeds any window (stream: %d)", hdr.Length(), hdr.StreamID())
		if sendErr := s.sendNoWait(s.goAway(goAwayProtoErr)); sendErr != nil {
			s.logger.Printf("[WARN] yamux: failed to send go away: %v", sendErr)
		}
		return ErrRecvWindowExceeded
	}

	// Check for a new stream creation
	id := hdr.StreamID()
	flags := hdr.Flags()
	if flags&flagSYN == flagSYN {
		if err := s.incomingStream(id); err != nil {
			return err
		}
	}

	// Get the stream
	s.streamLock.Lock()
	stream := s.streams[id]
	s.streamLock.Unlock()

	// If we do not have a stream, likely we sent a RST
	if stream == nil {
		// Drain any data on the wire
		if hdr.MsgType() == typeData && hdr.Length() > 0 {
			s.logger.Printf("[WARN] yamux: Discarding data for stream: %d", id)
			if _, err := io.CopyN(io.Discard, s.bufRead, int64(hdr.Length())); err != nil {
				s.logger.Printf("[ERR] yamux: Failed to discard data: %v", err)
				return nil
			}
		} else {
			s.logger.Printf("[WARN] yamux: frame for missing stream: %v", hdr)
		}
		return nil
	}

	// Check if this is a window update
	if hdr.MsgType() == typeWindowUpdate {
		if err := stream.incrSendWindow(hdr, flags); err != nil {
			if sendErr := s.sendNoWait(s.goAway(goAwayProtoErr)); sendErr != nil {
				s.logger.Printf("[WARN] yamux: failed to send go away: %v", sendErr)
			}
			return err
		}
		return nil
	}

	// Read the new data
	if err := stream.readData(hdr, flags, s.bufRead); err != nil {
		if sendErr := s.sendNoWait(s.goAway(goAwayProtoErr)); sendErr != nil {
			s.logger.Printf("[WARN] yamux: failed to send go away: %v", sendErr)
		}
		return err
	}
	return nil
}

// handlePing is invokde for a typePing frame
func (s *Session) handlePing(hdr header) error {
	flags := hdr.Flags()
	pingID := hdr.Length()

	// Check if this is a query: queue the answer for the send loop,
	// without blocking this loop on the write or starting a goroutine.
	if flags&flagSYN == flagSYN {
		s.pongs.add(pingID)
		if s.pongs.waking.CompareAndSwap(false, true) {
			select {
			case s.sendCh <- pongWake:
			default:
				// The queue is full: the send loop takes the
				// answers with its next batch.
				s.pongs.waking.Store(false)
			}
		}
		return nil
	}

	// Handle a response
	s.pingLock.Lock()
	ch := s.pings[pingID]
	if ch != nil {
		delete(s.pings, pingID)
		close(ch)
	}
	s.pingLock.Unlock()
	return nil
}

// handleGoAway is invokde for a typeGoAway frame
func (s *Session) handleGoAway(hdr header) error {
	code := hdr.Length()
	switch code {
	case goAwayNormal:
		if atomic.SwapInt32(&s.remoteGoAway, 1) == 0 {
			close(s.goAwayCh)
		}
	case goAwayProtoErr:
		s.logger.Printf("[ERR] yamux: received protocol error go away")
		return ErrRemoteProtocolError
	case goAwayInternalErr:
		s.logger.Printf("[ERR] yamux: received internal error go away")
		return ErrRemoteInternalError
	default:
		s.logger.Printf("[ERR] yamux: received unexpected go away")
		return ErrUnexpectedGoAway
	}
	return nil
}

// incomingStream is used to create a new incoming stream
func (s *Session) incomingStream(id uint32) error {
	// The peer allocates IDs of the other parity than ours. One of ours
	// could collide with a stream this side opens, and would escape the
	// count of the peer's streams.
	if id == 0 || s.localID(id) {
		s.logger.Printf("[ERR] yamux: peer opened stream %d, an ID it does not allocate", id)
		return s.protocolError(ErrInvalidStreamID)
	}

	// Reject immediately if we are doing a go away
	if atomic.LoadInt32(&s.localGoAway) == 1 {
		hdr := header(make([]byte, headerSize))
		hdr.encode(typeWindowUpdate, flagRST, id, 0)
		return s.sendNoWait(hdr)
	}

	s.streamLock.Lock()
	// Check if stream already exists
	if _, ok := s.streams[id]; ok {
		s.streamLock.Unlock()
		s.logger.Printf("[ERR] yamux: duplicate stream declared")
		return s.protocolError(ErrDuplicateStream)
	}
	if s.numIncoming >= s.maxIncoming {
		s.streamLock.Unlock()
		s.logger.Printf("[ERR] yamux: peer opened more than %d streams", s.maxIncoming)
		return s.protocolError(fmt.Errorf("%w (%d)", ErrTooManyStreams, s.maxIncoming))
	}

	// Register the stream, if the backlog has room for it, before
	// AcceptStream can return it: a stream accepted is one counted. Only
	// this loop sends on acceptCh, so room now is room for the send.
	if len(s.acceptCh) < cap(s.acceptCh) {
		stream := newStream(s, id, streamSYNReceived)
		s.streams[id] = stream
		s.numIncoming++
		s.incomingTotal.Add(1)
		s.acceptCh <- stream
		s.streamLock.Unlock()
		return nil
	}
	s.streamLock.Unlock()

	// Backlog exceeded! RST the stream
	s.logger.Printf("[WARN] yamux: backlog exceeded, forcing connection reset")
	hdr := header(make([]byte, headerSize))
	hdr.encode(typeWindowUpdate, flagRST, id, 0)
	return s.sendNoWait(hdr)
}

// protocolError tells the peer it broke the protocol, with a GoAway, and
// returns err, which ends the session.
func (s *Session) protocolError(err error) error {
	if sendErr := s.sendNoWait(s.goAway(goAwayProtoErr)); sendErr != nil {
		s.logger.Printf("[WARN] yamux: failed to send go away: %v", sendErr)
	}
	return err
}

// localID reports whether id is of the parity this side allocates.
func (s *Session) localID(id uint32) bool {
	return id%2 == 1 == s.client
}

// forget tells a stream's last frame (FIN or RST) and its removal from
// the session which comes first.
type forget bool

const (
	forgetFirst forget = true
	forgetLast  forget = false
)

// forgetOrder returns when to remove stream id, which is closing, from the
// streams, relative to queueing its last frame. The stream limits hold
// only if neither side counts fewer of its own streams than the peer
// counts of them: this side removes a stream it opened after its last
// frame is queued (an open that follows is queued behind, so the peer
// processes the close first), and one the peer opened before its last
// frame is sent (the peer may open another as soon as it has the frame).
func (s *Session) forgetOrder(id uint32) forget {
	if s.localID(id) {
		return forgetLast
	}
	return forgetFirst
}

// closeStream is used to close a stream once both sides have
// issued a close. If there was an in-flight SYN and the stream
// was not yet established, then this will give the credit back.
func (s *Session) closeStream(id uint32) {
	s.streamLock.Lock()
	if _, ok := s.inflight[id]; ok {
		// Forgotten too: an ACK that comes later must not give back
		// another stream's semaphore (upstream kept the entry).
		delete(s.inflight, id)
		select {
		case <-s.synCh:
		default:
			s.logger.Printf("[ERR] yamux: SYN tracking out of sync")
		}
	}
	if _, ok := s.streams[id]; ok {
		delete(s.streams, id)
		if s.localID(id) {
			s.numOutgoing--
		} else {
			s.numIncoming--
		}
	}
	s.streamLock.Unlock()
}

// establishStream is used to mark a stream that was in the
// SYN Sent state as established.
func (s *Session) establishStream(id uint32) {
	s.streamLock.Lock()
	defer s.streamLock.Unlock()
	// Only an ACK of an open in flight gives back a semaphore: upstream
	// gave one back for any ACK (logging each), so a peer repeating ACKs
	// lifted the bound on this side's opens in flight.
	if _, ok := s.inflight[id]; !ok {
		return
	}
	delete(s.inflight, id)
	select {
	case <-s.synCh:
	default:
		s.logger.Printf("[ERR] yamux: established stream without inflight SYN (didn't have semaphore)")
	}
}

// connEnded reports whether err, from reading the connection, is the
// connection's normal end: the peer closed it or reset it, or this side
// closed it. Upstream matches the error's text for "closed" and "reset by
// peer".
func connEnded(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.ErrClosedPipe) || errors.Is(err, syscall.ECONNRESET)
}

// bufferedConn is a connection that buffers its own reads, such as the
// tunnel's WebSocket stream. The session reads it directly: another
// buffer in front would copy every byte once more.
type bufferedConn interface {
	ReadIsBuffered() bool
}

// recvReader returns what the receive loop reads conn through.
func recvReader(conn io.Reader) io.Reader {
	if b, ok := conn.(bufferedConn); ok && b.ReadIsBuffered() {
		return conn
	}
	return bufio.NewReader(conn)
}

// RemoteGoAwayChan returns a channel that is closed when the remote side
// sends a GoAway (a normal one: the session goes on for the streams it
// has, and this side may open no more). The tunnel's gateway sends one
// when it shuts down, and its agent moves to another gateway.
func (s *Session) RemoteGoAwayChan() <-chan struct{} { return s.goAwayCh }
