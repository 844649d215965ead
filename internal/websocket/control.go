package websocket

import (
	"sync"
	"sync/atomic"
	"time"
)

// controlWriteTimeout bounds a control frame that the reader, or Close,
// writes itself: a peer that sends pings but reads nothing for this long is
// cut off, instead of stalling the reader for ever.
const controlWriteTimeout = 10 * time.Second

// control holds the control frames that the reader (a pong, the echo of
// the peer's close, the close that fails the connection) or Close had to
// send while a writer held the write lock. Neither waits for the writer:
// they queue the frame here, and the writer sends it when it is done (see
// unlockWriter), so that a writer blocked on a peer that does not read can
// never stall the reader.
type control struct {
	pending atomic.Bool // queued holds a frame; read without mu on every write
	mu      sync.Mutex
	queued  controlFrames // guarded by mu
	out     controlFrames // guarded by Conn.wmu: the frames being sent
	timeout time.Duration // controlWriteTimeout, or shorter in tests
}

// controlFrames is at most one pong and one close. Only the latest ping
// needs an answer (RFC 6455 section 5.5.3), so a newer pong replaces an
// older one; the first close is the one that counts.
type controlFrames struct {
	pong     bool
	close    bool
	hangUp   bool // close the connection once the close frame is out
	pongLen  uint8
	closeLen uint8
	pongBuf  [maxControlPayload]byte
	closeBuf [maxControlPayload]byte
}

// deadliner is the part of net.Conn that sets deadlines.
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// lockWriter takes the write lock for a writer. Control frames queued
// meanwhile go out first: a close queued by Close must precede (and then
// refuse) further data.
func (c *Conn) lockWriter() {
	c.wmu.Lock()
	if c.ctl.pending.Load() {
		c.sendQueuedLocked()
	}
}

// unlockWriter sends the control frames queued while a writer held the
// lock, as the writer's own writes go, and releases it.
func (c *Conn) unlockWriter() { c.release(false) }

// release sends the control frames queued while the lock was held, within
// c.ctl.timeout if bounded, and releases the lock. It looks again once
// released: a frame queued between the last look and the release found
// the lock taken, and would otherwise wait for the next writer, which may
// never come. It returns the first error of a bounded write.
func (c *Conn) release(bounded bool) error {
	var err error
	for {
		if c.ctl.pending.Load() {
			if bounded {
				if e := c.sendQueuedBounded(); err == nil {
					err = e
				}
			} else {
				c.sendQueuedLocked()
			}
		}
		c.wmu.Unlock()
		if !c.ctl.pending.Load() || !c.wmu.TryLock() {
			return err
		}
	}
}

// sendControl sends a pong or a close frame without waiting for a writer.
// With the write lock free it writes the frame itself, within
// c.ctl.timeout (or the write deadline set through Stream, if sooner);
// otherwise the writer holding the lock sends it when it is done. With
// hangUp the connection closes once the close frame is out. The error is
// that of a write made here; the connection is then closed.
func (c *Conn) sendControl(op byte, payload []byte, hangUp bool) error {
	c.ctl.mu.Lock()
	q := &c.ctl.queued
	switch op {
	case OpPong:
		q.pong = true
		q.pongLen = uint8(copy(q.pongBuf[:], payload))
	case OpClose:
		if !q.close {
			q.close = true
			q.closeLen = uint8(copy(q.closeBuf[:], payload))
		}
		q.hangUp = q.hangUp || hangUp
	}
	c.ctl.pending.Store(true)
	c.ctl.mu.Unlock()
	if !c.wmu.TryLock() {
		return nil
	}
	return c.release(true)
}

// sendQueuedBounded is sendQueuedLocked within c.ctl.timeout, where the
// connection has deadlines; the write deadline set through Stream is
// restored afterwards.
func (c *Conn) sendQueuedBounded() error {
	if c.dl == nil {
		return c.sendQueuedLocked()
	}
	c.dmu.Lock()
	bound := time.Now().Add(c.ctl.timeout)
	if !c.wdl.IsZero() && c.wdl.Before(bound) {
		bound = c.wdl
	}
	c.dl.SetWriteDeadline(bound)
	c.dmu.Unlock()
	err := c.sendQueuedLocked()
	c.dmu.Lock()
	c.dl.SetWriteDeadline(c.wdl)
	c.dmu.Unlock()
	return err
}

// sendQueuedLocked writes the queued control frames. Nothing follows our
// close frame, not even a pong.
func (c *Conn) sendQueuedLocked() error {
	c.ctl.mu.Lock()
	c.ctl.out = c.ctl.queued
	c.ctl.queued = controlFrames{}
	c.ctl.pending.Store(false)
	c.ctl.mu.Unlock()
	o := &c.ctl.out
	var err error
	if o.pong && !c.closeSent {
		err = c.writeFrameLocked(OpPong, true, o.pongBuf[:o.pongLen])
	}
	if o.close && !c.closeSent && err == nil {
		c.closeSent = true
		err = c.writeFrameLocked(OpClose, true, o.closeBuf[:o.closeLen])
	}
	if err != nil || o.hangUp {
		// After a failed write the peer may be inside a frame we cut
		// short: nothing more can be sent.
		c.CloseNow()
	}
	return err
}
