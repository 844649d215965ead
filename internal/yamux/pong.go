package yamux

import (
	"sync"
	"sync/atomic"
)

// maxPendingPongs is how many pings a session holds the answers of while
// its send loop is busy or its connection stalled. A legitimate peer has
// one or two pings outstanding (upstream's keepalive waits for each answer
// before it pings again; Ping callers add theirs).
const maxPendingPongs = 16

// pongQueue holds the IDs of the pings the session has yet to answer. The
// receive loop adds to it without blocking and without a goroutine:
// upstream started a goroutine per ping to queue its answer, and a peer
// flooding pings made hundreds of thousands of them (1 M pings: 449,000
// goroutines, 1.6 GB). The send loop writes the answers ahead of the
// frames it batches, so a keepalive is answered however full the send
// queue.
//
// Past maxPendingPongs the oldest ID is dropped: a pinger waits for the
// answer to its latest ping, and more outstanding pings than a pinger
// keeps mean a flood, or a connection stalled so long that their senders
// have given up on the older ones.
type pongQueue struct {
	mu      sync.Mutex
	ids     [maxPendingPongs]uint32 // a ring: ids[head], ... n of them
	head, n int

	pending atomic.Bool // n > 0, read by the send loop without mu

	// waking is set while a wake-up (pongWake) waits in the send queue,
	// so that there is at most one.
	waking atomic.Bool
}

// pongWake, queued for the send loop, only wakes it: a select on a
// channel of its own would cost every frame's wait a third case.
var pongWake = &sendReady{}

// add queues the answer to ping id. The caller wakes the send loop.
func (q *pongQueue) add(id uint32) {
	q.mu.Lock()
	if q.n == len(q.ids) {
		q.head = (q.head + 1) % len(q.ids)
		q.n--
	}
	q.ids[(q.head+q.n)%len(q.ids)] = id
	q.n++
	q.pending.Store(true)
	q.mu.Unlock()
}

// take appends the queued answers, encoded, to buf, and empties the queue.
func (q *pongQueue) take(buf []byte) []byte {
	if !q.pending.Load() {
		return buf
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range q.n {
		var hdr [headerSize]byte
		header(hdr[:]).encode(typePing, flagACK, 0, q.ids[(q.head+i)%len(q.ids)])
		buf = append(buf, hdr[:]...)
	}
	q.head, q.n = 0, 0
	q.pending.Store(false)
	return buf
}
