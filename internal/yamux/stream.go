package yamux

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

type streamState int

const (
	streamInit streamState = iota
	streamSYNSent
	streamSYNReceived
	streamEstablished
	streamLocalClose
	streamRemoteClose
	streamClosed
	streamReset
)

// Stream is used to represent a logical stream
// within a session.
type Stream struct {
	recvWindow uint32
	sendWindow uint32

	id      uint32
	session *Session

	state     streamState
	stateLock sync.Mutex
	// readErr and writeErr are what Read (once the buffer is empty) and
	// Write return after forceClose closed the stream while it was open
	// in that direction: ErrSessionShutdown when the session ended, where
	// upstream returned io.EOF and ErrStreamClosed (a stream cut off has
	// not ended cleanly), or nil for upstream's errors. Guarded by
	// stateLock.
	readErr, writeErr error

	recvBuf  *recvBuffer
	recvLock sync.Mutex

	// readWait is the buffer of a Read blocked on an empty stream, and
	// readN what the receive loop put in it: data for a waiting reader
	// goes straight from the connection into the reader's buffer instead
	// of through recvBuf. Both are guarded by recvLock.
	readWait []byte
	readN    int
	// readDoneCh wakes the reader whose buffer readWait is when data has
	// been put in it. It is that reader's own: a wakeup on recvNotifyCh
	// may be taken by another reader of the stream, which would leave the
	// data's owner asleep.
	readDoneCh chan struct{}

	controlHdr     header
	controlErr     chan error
	controlHdrLock sync.Mutex

	sendHdr  header
	sendErr  chan error
	sendLock sync.Mutex

	// sendRdy and controlRdy carry data and control frames to the send
	// loop, reused from frame to frame (guarded by sendLock and
	// controlHdrLock); nil when the last frame may still be queued
	// (waitForSendErr).
	sendRdy, controlRdy *sendReady

	recvNotifyCh chan struct{}
	sendNotifyCh chan struct{}

	readDeadline  deadline
	writeDeadline deadline

	// establishCh is notified if the stream is established or being closed.
	establishCh chan struct{}

	// closeTimer is set with stateLock held to honor the StreamCloseTimeout
	// setting on Session.
	closeTimer *time.Timer

	// onPeerClose is called once the peer has ended the stream or the
	// session has: see NotifyPeerClose. Guarded by stateLock.
	onPeerClose func()
}

// newStream is used to construct a new stream within
// a given session for an ID
func newStream(session *Session, id uint32, state streamState) *Stream {
	s := &Stream{
		id:           id,
		session:      session,
		state:        state,
		controlHdr:   header(make([]byte, headerSize)),
		controlErr:   make(chan error, 1),
		sendHdr:      header(make([]byte, headerSize)),
		sendErr:      make(chan error, 1),
		recvWindow:   initialStreamWindow,
		sendWindow:   initialStreamWindow,
		recvNotifyCh: make(chan struct{}, 1),
		readDoneCh:   make(chan struct{}, 1),
		sendNotifyCh: make(chan struct{}, 1),
		establishCh:  make(chan struct{}, 1),
	}
	return s
}

// Session returns the associated stream session
func (s *Stream) Session() *Session {
	return s.session
}

// StreamID returns the ID of this stream
func (s *Stream) StreamID() uint32 {
	return s.id
}

// Read is used to read from the stream. Once the peer has closed the
// stream, Read returns what arrived, then io.EOF. Once the session has
// ended, a Read of a stream the peer had not closed returns what arrived,
// then ErrSessionShutdown, at once.
func (s *Stream) Read(b []byte) (n int, err error) {
	defer asyncNotify(s.recvNotifyCh)
	var waiting bool
	// timer bounds the waits of this call by the read deadline: one for
	// all of them, since a reader is woken without data now and then (a
	// wakeup meant for another reader, a deadline changed).
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
START:

	// If the stream is closed and there's no data buffered, return EOF
	s.stateLock.Lock()
	switch s.state {
	case streamLocalClose:
		// LocalClose only prohibits further local writes. Handle reads normally.
	case streamRemoteClose:
		fallthrough
	case streamClosed:
		s.recvLock.Lock()
		if s.recvBuf == nil || s.recvBuf.Len() == 0 {
			s.recvLock.Unlock()
			err := s.readErr
			s.stateLock.Unlock()
			if err != nil {
				return 0, err
			}
			return 0, io.EOF
		}
		s.recvLock.Unlock()
	case streamReset:
		s.stateLock.Unlock()
		return 0, ErrConnectionReset
	}
	s.stateLock.Unlock()

	// If there is no data available, block
	s.recvLock.Lock()
	if s.recvBuf == nil || s.recvBuf.Len() == 0 {
		// Unless the session has ended: nothing more will arrive. Its
		// force-close of the stream may not have come yet (it closes the
		// streams one by one); waiting for it, as upstream does, woke
		// this reader on the closed shutdownCh again and again, and
		// thousands of such readers starved the force-close of CPU.
		if s.session.IsClosed() {
			s.recvLock.Unlock()
			return 0, ErrSessionShutdown
		}
		if s.readWait == nil && len(b) > 0 {
			s.readWait, s.readN = b, 0
			waiting = true
		}
		s.recvLock.Unlock()
		goto WAIT
	}

	// Read any bytes
	n = s.recvBuf.Read(b)
	s.recvLock.Unlock()
	return n, s.afterRead()

WAIT:
	var timeout <-chan time.Time
	var timedOut bool
	if d := s.readDeadline.get(); !d.IsZero() {
		// A deadline already past (net/http sets one to end a read it
		// no longer wants) times out without a timer.
		if delay := time.Until(d); delay <= 0 {
			timedOut = true
		} else {
			timer = resetTimer(timer, delay)
			timeout = timer.C
		}
	}
	var done <-chan struct{}
	if waiting {
		done = s.readDoneCh
	}
	if !timedOut {
		select {
		case <-s.session.shutdownCh:
		case <-s.recvNotifyCh:
		case <-done:
		case <-timeout:
			timedOut = true
		}
	}
	// Collect what the receive loop delivered into b while we waited, and
	// withdraw b: from here on new data goes to recvBuf.
	if waiting {
		waiting = false
		s.recvLock.Lock()
		n = s.readN
		s.readWait, s.readN = nil, 0
		s.recvLock.Unlock()
	}
	if n > 0 {
		return n, s.afterRead()
	}
	if timedOut {
		return 0, ErrTimeout
	}
	goto START
}

// afterRead sends a window update if enough has been read, and returns
// an error only if the update may never reach the peer while the session
// lives on (ErrConnectionWriteTimeout): the reader must know, or the
// stream could stall. Any other error means the session is over (a failed
// write ends it in the send loop), which the next Read reports; the bytes
// of this one were read. Upstream returns every error but
// ErrSessionShutdown, so a read of data that arrived before the peer
// closed failed when its update met the closed connection
// (TestHalfCloseSessionShutdown, about once in 15 runs under -race).
func (s *Stream) afterRead() error {
	if err := s.sendWindowUpdate(); errors.Is(err, ErrConnectionWriteTimeout) {
		return err
	}
	return nil
}

// Write is used to write to the stream. Once the session has ended, it
// returns ErrSessionShutdown, at once.
func (s *Stream) Write(b []byte) (n int, err error) {
	s.sendLock.Lock()
	defer s.sendLock.Unlock()
	total := 0
	for total < len(b) {
		n, err := s.write(b[total:])
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// write is used to write to the stream, may return on
// a short write.
func (s *Stream) write(b []byte) (n int, err error) {
	var flags uint16
	var max uint32
	var body []byte
START:
	s.stateLock.Lock()
	switch s.state {
	case streamLocalClose:
		fallthrough
	case streamClosed:
		err := s.writeErr
		s.stateLock.Unlock()
		if err != nil {
			return 0, err
		}
		return 0, ErrStreamClosed
	case streamReset:
		s.stateLock.Unlock()
		return 0, ErrConnectionReset
	}
	s.stateLock.Unlock()

	// If there is no data available, block
	window := atomic.LoadUint32(&s.sendWindow)
	if window == 0 {
		goto WAIT
	}

	// Determine the flags if any
	flags = s.sendFlags()

	// Send up to our send window
	max = min(window, uint32(len(b)))
	body = b[:max]

	// Send the header
	s.sendHdr.encode(typeData, flags, s.id, max)
	if s.sendRdy == nil {
		s.sendRdy = &sendReady{Err: s.sendErr}
	}
	if err = s.session.waitForSendErr(s.sendHdr, body, s.sendRdy); err != nil {
		if errors.Is(err, ErrSessionShutdown) || errors.Is(err, ErrConnectionWriteTimeout) {
			// Message left in ready queue, header re-use is unsafe.
			s.sendHdr = header(make([]byte, headerSize))
			s.sendRdy = nil
		}
		return 0, err
	}

	// Reduce our send window
	atomic.AddUint32(&s.sendWindow, ^uint32(max-1))

	// Unlock
	return int(max), err

WAIT:
	var timeout <-chan time.Time
	var timer *time.Timer
	if d := s.writeDeadline.get(); !d.IsZero() {
		delay := time.Until(d)
		if delay <= 0 {
			return 0, ErrTimeout
		}
		timer = time.NewTimer(delay)
		timeout = timer.C
	}
	var shutdown bool
	select {
	case <-s.session.shutdownCh:
		// No window update will come. Upstream went back to START,
		// found the window still empty (the stream not yet
		// force-closed) and woke on the closed channel again: a spin.
		shutdown = true
	case <-s.sendNotifyCh:
	case <-timeout:
		return 0, ErrTimeout
	}
	if timer != nil {
		if !timer.Stop() {
			<-timeout
		}
	}
	if shutdown {
		return 0, ErrSessionShutdown
	}
	goto START
}

// sendFlags determines any flags that are appropriate
// based on the current stream state
func (s *Stream) sendFlags() uint16 {
	s.stateLock.Lock()
	defer s.stateLock.Unlock()
	var flags uint16
	switch s.state {
	case streamInit:
		flags |= flagSYN
		s.state = streamSYNSent
	case streamSYNReceived:
		flags |= flagACK
		s.state = streamEstablished
	}
	return flags
}

// sendWindowUpdate potentially sends a window update enabling
// further writes to take place. Must be invoked with the lock.
func (s *Stream) sendWindowUpdate() error {
	s.controlHdrLock.Lock()
	defer s.controlHdrLock.Unlock()

	// Determine the flags if any. This takes stateLock, so it comes before
	// recvLock: Read takes stateLock and then recvLock, and the opposite
	// order deadlocks two readers of a closing stream.
	flags := s.sendFlags()

	// Determine the delta update
	max := s.session.config.MaxStreamWindowSize
	var bufLen uint32
	s.recvLock.Lock()
	if s.recvBuf != nil {
		bufLen = uint32(s.recvBuf.Len())
	}
	delta := (max - bufLen) - s.recvWindow

	// Check if we can omit the update
	if delta < (max/2) && flags == 0 {
		s.recvLock.Unlock()
		return nil
	}

	// Update our window
	s.recvWindow += delta
	s.recvLock.Unlock()

	// Send the header
	s.controlHdr.encode(typeWindowUpdate, flags, s.id, delta)
	if err := s.session.waitForSendErr(s.controlHdr, nil, s.controlReady()); err != nil {
		if errors.Is(err, ErrSessionShutdown) || errors.Is(err, ErrConnectionWriteTimeout) {
			// Message left in ready queue, header re-use is unsafe.
			s.controlHdr = header(make([]byte, headerSize))
			s.controlRdy = nil
		}
		return err
	}
	return nil
}

// controlReady returns the stream's sendReady for control frames; the
// caller holds controlHdrLock.
func (s *Stream) controlReady() *sendReady {
	if s.controlRdy == nil {
		s.controlRdy = &sendReady{Err: s.controlErr}
	}
	return s.controlRdy
}

// sendClose is used to send a FIN
func (s *Stream) sendClose() error {
	s.controlHdrLock.Lock()
	defer s.controlHdrLock.Unlock()

	flags := s.sendFlags()
	flags |= flagFIN
	s.controlHdr.encode(typeWindowUpdate, flags, s.id, 0)
	if err := s.session.waitForSendErr(s.controlHdr, nil, s.controlReady()); err != nil {
		if errors.Is(err, ErrSessionShutdown) || errors.Is(err, ErrConnectionWriteTimeout) {
			// Message left in ready queue, header re-use is unsafe.
			s.controlHdr = header(make([]byte, headerSize))
			s.controlRdy = nil
		}
		return err
	}
	return nil
}

// Close is used to close the stream
func (s *Stream) Close() error {
	closeStream := false
	s.stateLock.Lock()
	switch s.state {
	// Opened means we need to signal a close
	case streamSYNSent:
		fallthrough
	case streamSYNReceived:
		fallthrough
	case streamEstablished:
		s.state = streamLocalClose
		goto SEND_CLOSE

	case streamLocalClose:
	case streamRemoteClose:
		s.state = streamClosed
		closeStream = true
		goto SEND_CLOSE

	case streamClosed:
	case streamReset:
	default:
		panic("unhandled state")
	}
	s.stateLock.Unlock()
	return nil
SEND_CLOSE:
	// This shouldn't happen (the more realistic scenario to cancel the
	// timer is via processFlags) but just in case this ever happens, we
	// cancel the timer to prevent dangling timers.
	if s.closeTimer != nil {
		s.closeTimer.Stop()
		s.closeTimer = nil
	}

	// If we have a StreamCloseTimeout set we start the timeout timer.
	// We do this only if we're not already closing the stream since that
	// means this was a graceful close.
	//
	// This prevents memory leaks if one side (this side) closes and the
	// remote side poorly behaves and never responds with a FIN to complete
	// the close. After the specified timeout, we clean our resources up no
	// matter what. Not once the session has ended: it has closed, or is
	// closing, every stream (upstream left a timer per stream closed after
	// the session's end).
	if !closeStream && s.session.config.StreamCloseTimeout > 0 && !s.session.IsClosed() {
		s.closeTimer = time.AfterFunc(
			s.session.config.StreamCloseTimeout, s.closeTimeout)
	}

	s.stateLock.Unlock()
	forget := s.session.forgetOrder(s.id)
	if closeStream && forget == forgetFirst {
		s.session.closeStream(s.id)
	}
	s.sendClose()
	s.notifyWaiting()
	if closeStream && forget == forgetLast {
		s.session.closeStream(s.id)
	}
	return nil
}

// closeTimeout is called after StreamCloseTimeout during a close to
// close this stream.
func (s *Stream) closeTimeout() {
	// Close our side forcibly
	s.forceClose(nil)

	// Free the stream from the session map, and send a RST so the remote
	// side closes too.
	forget := s.session.forgetOrder(s.id)
	if forget == forgetFirst {
		s.session.closeStream(s.id)
	}
	s.sendLock.Lock()
	defer s.sendLock.Unlock()
	hdr := header(make([]byte, headerSize))
	hdr.encode(typeWindowUpdate, flagRST, s.id, 0)
	_ = s.session.sendNoWait(hdr)
	if forget == forgetLast {
		s.session.closeStream(s.id)
	}
}

// forceClose closes the stream without telling the peer: the session is
// exiting (err is ErrSessionShutdown), or the peer did not answer a close
// (err is nil). Read then returns what was buffered and, if the peer had
// not closed the stream, err; Write returns err if this side had not
// closed it. A nil err means io.EOF and ErrStreamClosed, as upstream. A
// reset stream stays reset (upstream made it closed, which turned
// ErrConnectionReset into io.EOF).
func (s *Stream) forceClose(err error) {
	s.stateLock.Lock()
	fire := s.onPeerClose
	s.onPeerClose = nil
	switch s.state {
	case streamReset, streamClosed:
	case streamLocalClose:
		s.readErr = err
	case streamRemoteClose:
		s.writeErr = err
	default:
		s.readErr, s.writeErr = err, err
	}
	if s.state != streamReset {
		s.state = streamClosed
	}
	s.stateLock.Unlock()
	s.notifyWaiting()
	if fire != nil {
		fire()
	}
}

// NotifyPeerClose arranges for f to be called once the peer closes or
// resets the stream, or the session ends, so that whoever waits elsewhere
// on the stream's behalf (a proxy waiting for its upstream's answer) can
// give up without a goroutine reading the stream. f runs on the session's
// receive loop and must not block. It reports false, and does not keep
// f, when that has already happened. A later call replaces f;
// StopNotifyPeerClose removes it.
func (s *Stream) NotifyPeerClose(f func()) bool {
	s.stateLock.Lock()
	defer s.stateLock.Unlock()
	switch s.state {
	case streamRemoteClose, streamClosed, streamReset:
		return false
	}
	s.onPeerClose = f
	return true
}

// StopNotifyPeerClose removes the function NotifyPeerClose set. It
// reports whether there was one, that is whether it had not been called.
func (s *Stream) StopNotifyPeerClose() bool {
	s.stateLock.Lock()
	defer s.stateLock.Unlock()
	had := s.onPeerClose != nil
	s.onPeerClose = nil
	return had
}

// processFlags is used to update the state of the stream
// based on set flags, if any. Lock must be held
func (s *Stream) processFlags(flags uint16) error {
	// The peer-close hook runs last, once the state lock is released.
	var fire func()
	defer func() {
		if fire != nil {
			fire()
		}
	}()
	s.stateLock.Lock()
	defer s.stateLock.Unlock()

	// Close the stream without holding the state lock
	closeStream := false
	defer func() {
		if closeStream {
			if s.closeTimer != nil {
				// Stop our close timeout timer since we gracefully closed
				s.closeTimer.Stop()
			}

			s.session.closeStream(s.id)
		}
	}()

	if flags&flagACK == flagACK {
		if s.state == streamSYNSent {
			s.state = streamEstablished
		}
		asyncNotify(s.establishCh)
		s.session.establishStream(s.id)
	}
	if flags&flagFIN == flagFIN {
		switch s.state {
		case streamSYNSent:
			fallthrough
		case streamSYNReceived:
			fallthrough
		case streamEstablished:
			s.state = streamRemoteClose
			s.notifyWaiting()
			fire, s.onPeerClose = s.onPeerClose, nil
		case streamLocalClose:
			s.state = streamClosed
			closeStream = true
			s.notifyWaiting()
			fire, s.onPeerClose = s.onPeerClose, nil
		default:
			s.session.logger.Printf("[ERR] yamux: unexpected FIN flag in state %d", s.state)
			return ErrUnexpectedFlag
		}
	}
	if flags&flagRST == flagRST {
		s.state = streamReset
		closeStream = true
		s.notifyWaiting()
		fire, s.onPeerClose = s.onPeerClose, nil
	}
	return nil
}

// notifyWaiting notifies all the waiting channels
func (s *Stream) notifyWaiting() {
	asyncNotify(s.recvNotifyCh)
	asyncNotify(s.sendNotifyCh)
	asyncNotify(s.establishCh)
}

// incrSendWindow updates the size of our send window
func (s *Stream) incrSendWindow(hdr header, flags uint16) error {
	if err := s.processFlags(flags); err != nil {
		return err
	}

	// Increase window, unblock a sender. A window past 2^32-1 bytes is
	// no window a peer grants: upstream let it wrap around.
	delta := hdr.Length()
	for {
		w := atomic.LoadUint32(&s.sendWindow)
		if w+delta < w {
			return ErrWindowOverflow
		}
		if atomic.CompareAndSwapUint32(&s.sendWindow, w, w+delta) {
			break
		}
	}
	asyncNotify(s.sendNotifyCh)
	return nil
}

// readData is used to handle a data frame
func (s *Stream) readData(hdr header, flags uint16, conn io.Reader) error {
	if err := s.processFlags(flags); err != nil {
		return err
	}

	// Check that our recv window is not exceeded
	length := hdr.Length()
	if length == 0 {
		return nil
	}

	// Copy into buffer: both reads below take exactly the frame's bytes,
	// so conn needs no io.LimitedReader (one allocation a frame, upstream).
	s.recvLock.Lock()

	if length > s.recvWindow {
		s.session.logger.Printf("[ERR] yamux: receive window exceeded (stream: %d, remain: %d, recv: %d)", s.id, s.recvWindow, length)
		s.recvLock.Unlock()
		return ErrRecvWindowExceeded
	}

	// A reader blocked on an empty stream gets the data straight into its
	// buffer; what does not fit goes to recvBuf.
	var (
		direct int
		copied int
		err    error
	)
	if s.readWait != nil && s.readN == 0 && (s.recvBuf == nil || s.recvBuf.Len() == 0) {
		p := s.readWait
		if len(p) > int(length) {
			p = p[:length]
		}
		direct, err = io.ReadFull(conn, p)
		s.readN = direct
	}
	if rest := int(length) - direct; err == nil && rest > 0 {
		if s.recvBuf == nil {
			s.recvBuf = new(recvBuffer)
		}
		copied, err = s.recvBuf.readFrom(conn, rest, int(s.session.config.MaxStreamWindowSize))
	}
	if err != nil {
		// The session ends; its shutdown wakes the reader.
		s.session.logger.Printf("[ERR] yamux: Failed to read stream data: %v", err)
		s.recvLock.Unlock()
		return err
	}

	// Decrement the receive window
	s.recvWindow -= uint32(direct) + uint32(copied)
	s.recvLock.Unlock()

	// Unblock the reader the data went to, and any others
	if direct > 0 {
		asyncNotify(s.readDoneCh)
	}
	asyncNotify(s.recvNotifyCh)
	return nil
}

// SetDeadline sets the read and write deadlines
func (s *Stream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	if err := s.SetWriteDeadline(t); err != nil {
		return err
	}
	return nil
}

// SetReadDeadline sets the deadline for blocked and future Read calls.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.readDeadline.set(t)
	asyncNotify(s.recvNotifyCh)
	return nil
}

// SetWriteDeadline sets the deadline for blocked and future Write calls
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.writeDeadline.set(t)
	asyncNotify(s.sendNotifyCh)
	return nil
}

// Shrink is used to compact the amount of buffers utilized
// This is useful when using Yamux in a connection pool to reduce
// the idle memory utilization.
func (s *Stream) Shrink() {
	s.recvLock.Lock()
	if s.recvBuf != nil && s.recvBuf.Len() == 0 {
		s.recvBuf = nil
	}
	s.recvLock.Unlock()
}

// deadline is a stream's read or write deadline, set by any goroutine and
// read by Read or Write when they wait. Upstream keeps it in an
// atomic.Value, whose Store allocates a copy of the time.Time every time;
// net/http sets a connection's deadlines several times per request.
type deadline struct {
	mu sync.Mutex
	t  time.Time
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	d.t = t
	d.mu.Unlock()
}

func (d *deadline) get() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.t
}

// resetTimer returns t, or a new timer if it is nil, set to fire after
// delay. A value t sent before and nobody received is dropped first, so
// that it cannot pass for the new expiry (under the timer semantics of
// Go before 1.23, which a program's go.mod may still ask for).
func resetTimer(t *time.Timer, delay time.Duration) *time.Timer {
	if t == nil {
		return time.NewTimer(delay)
	}
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(delay)
	return t
}
