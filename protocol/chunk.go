package protocol

import (
	"errors"
	"fmt"
	"sync"
)

// ErrBodyTooLarge reports a chunked body whose announced or received size
// exceeds the receiver's body limit. A receiver answers it with an [Error]
// of code payload_too_large; every other rejection of a chunk wraps
// [ErrMalformed] and is answered invalid_request.
var ErrBodyTooLarge = errors.New("protocol: body too large")

// SplitRequest encodes req with body as the json-mode messages that carry
// it, each of which [Marshal] encodes in at most maxMessage bytes
// (maxMessage <= 0 means [MaxMessageBytes]).
//
// A body that fits gives one message without chunk fields, which a version
// 0 peer understands. A larger one gives N >= 2 messages as spec.md's
// chunking extension describes: the first carries every field of req, the
// first piece, ChunkCount and BodySize; the others only RequestID,
// ChunkIndex, ChunkCount and their piece. req.Body and req's chunk fields
// are ignored; req is not modified. The error wraps [ErrTooLarge] when the
// fields other than the body leave no room for it, and [ErrMalformed] when
// Marshal would refuse req.
func SplitRequest(req *HTTPRequest, body []byte, maxMessage int) ([]Message, error) {
	if req == nil {
		return nil, fmt.Errorf("%w: nil request", ErrMalformed)
	}
	return split(body, maxMessage, func(index, count int, size int64, piece string) Message {
		if index > 0 {
			return &HTTPRequest{RequestID: req.RequestID, ChunkIndex: index, ChunkCount: count, Body: piece}
		}
		m := *req
		m.Body, m.ChunkIndex, m.ChunkCount, m.BodySize = piece, 0, count, size
		return &m
	})
}

// SplitResponse is [SplitRequest] for a response.
func SplitResponse(resp *HTTPResponse, body []byte, maxMessage int) ([]Message, error) {
	if resp == nil {
		return nil, fmt.Errorf("%w: nil response", ErrMalformed)
	}
	return split(body, maxMessage, func(index, count int, size int64, piece string) Message {
		if index > 0 {
			return &HTTPResponse{RequestID: resp.RequestID, ChunkIndex: index, ChunkCount: count, Body: piece}
		}
		m := *resp
		m.Body, m.ChunkIndex, m.ChunkCount, m.BodySize = piece, 0, count, size
		return &m
	})
}

// split cuts body into the pieces build turns into messages. count 0 asks
// build for the one unchunked message.
//
// The room for a piece is the cap minus the size of its message with an
// empty body and every number at its largest possible width; base64 never
// needs JSON escaping, so n bytes of body take exactly 4*ceil(n/3)
// characters and a piece of 3*floor(room/4) bytes always fits.
func split(body []byte, maxMessage int, build func(index, count int, size int64, piece string) Message) ([]Message, error) {
	if maxMessage <= 0 {
		maxMessage = MaxMessageBytes
	}
	whole := build(0, 0, 0, EncodeBody(body))
	b, err := Marshal(whole)
	if err != nil {
		return nil, err
	}
	if len(b) <= maxMessage {
		return []Message{whole}, nil
	}

	// No count or index exceeds len(body), so measuring with it bounds the
	// width of every number written.
	widest := len(body)
	firstRoom, err := room(build(0, widest, int64(len(body)), ""), maxMessage)
	if err != nil {
		return nil, err
	}
	restRoom, err := room(build(widest, widest, 0, ""), maxMessage)
	if err != nil {
		return nil, err
	}
	// The unchunked message did not fit, so the body is longer than the
	// first piece; the guard keeps N >= 2 should that ever not hold.
	firstRoom = min(firstRoom, len(body)-1)
	if firstRoom <= 0 {
		return nil, fmt.Errorf("%w: %d-byte body does not fit in %d-byte messages", ErrTooLarge, len(body), maxMessage)
	}
	count := 1 + (len(body)-firstRoom+restRoom-1)/restRoom
	msgs := make([]Message, 0, count)
	msgs = append(msgs, build(0, count, int64(len(body)), EncodeBody(body[:firstRoom])))
	for i, off := 1, firstRoom; off < len(body); i++ {
		end := min(off+restRoom, len(body))
		msgs = append(msgs, build(i, count, 0, EncodeBody(body[off:end])))
		off = end
	}
	return msgs, nil
}

// room returns how many body bytes fit in empty, a message with an empty
// body, within maxMessage encoded bytes.
func room(empty Message, maxMessage int) (int, error) {
	b, err := Marshal(empty)
	if err != nil {
		return 0, err
	}
	n := (maxMessage - len(b)) / 4 * 3
	if n <= 0 {
		return 0, fmt.Errorf("%w: %d bytes without the body, limit %d", ErrTooLarge, len(b), maxMessage)
	}
	return n, nil
}

// Reassembler joins the chunks of json-mode bodies (see [HTTPRequest]) into
// whole messages. Chunks of one body may arrive in any order, interleaved
// with other bodies'. A Reassembler is safe for concurrent use; it keeps a
// body by the message type and request ID.
//
// Memory is bounded: at most maxPending bodies are incomplete at a time,
// each of at most maxBody bytes. A chunk that starts another body beyond
// maxPending drops the oldest incomplete one, whose later chunks then start
// over (and fail or are dropped in turn).
type Reassembler struct {
	maxBody    int64
	maxPending int

	mu      sync.Mutex
	seq     uint64
	pending map[partialKey]*partial
}

type partialKey struct {
	typ, id string
}

// partial is one incomplete body. Pieces are kept by index in a map, not a
// slice of ChunkCount entries, so that a lying count costs no memory.
type partial struct {
	seq      uint64
	count    int
	first    Message // nil until chunk 0 arrives
	size     int64   // BodySize of chunk 0; valid once first is set
	pieces   map[int][]byte
	received int64
}

// NewReassembler returns a Reassembler that accepts bodies of at most
// maxBody decoded bytes (<= 0 means [DefaultMaxBodyBytes]) and keeps at
// most maxPending incomplete bodies (<= 0 means 64).
func NewReassembler(maxBody int64, maxPending int) *Reassembler {
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	if maxPending <= 0 {
		maxPending = 64
	}
	return &Reassembler{maxBody: maxBody, maxPending: maxPending, pending: make(map[partialKey]*partial)}
}

// Add takes one [HTTPRequest] or [HTTPResponse] message. When it completes
// a body — at once for an unchunked message — Add returns the message that
// carries the other fields (chunk 0), with Body, ChunkIndex, ChunkCount and
// BodySize cleared, and the decoded body. Until then it returns nil, nil,
// nil. Add keeps m.
//
// Errors wrap [ErrBodyTooLarge] for a body over maxBody, and [ErrMalformed]
// for anything else spec.md tells a receiver to reject: another message
// type, bad base64, an empty piece, an index not below the count, an index
// received twice, a count that differs between chunks or exceeds the body
// size, or pieces that do not add up to the body size. After an error the
// body's chunks received so far are dropped.
func (r *Reassembler) Add(m Message) (Message, []byte, error) {
	var (
		id, piece    string
		index, count int
		size         int64
	)
	switch m := m.(type) {
	case *HTTPRequest:
		id, piece, index, count, size = m.RequestID, m.Body, m.ChunkIndex, m.ChunkCount, m.BodySize
	case *HTTPResponse:
		id, piece, index, count, size = m.RequestID, m.Body, m.ChunkIndex, m.ChunkCount, m.BodySize
	default:
		return nil, nil, fmt.Errorf("%w: %T carries no body", ErrMalformed, m)
	}
	data, err := DecodeBody(piece)
	if err != nil {
		return nil, nil, err
	}

	if count <= 1 {
		if index != 0 {
			return nil, nil, fmt.Errorf("%w: chunk_index %d of an unchunked body", ErrMalformed, index)
		}
		if int64(len(data)) > r.maxBody {
			return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBodyTooLarge, len(data), r.maxBody)
		}
		clearChunk(m)
		return m, data, nil
	}

	if index >= count {
		return nil, nil, fmt.Errorf("%w: chunk_index %d not below chunk_count %d", ErrMalformed, index, count)
	}
	if int64(count) > r.maxBody {
		return nil, nil, fmt.Errorf("%w: %d chunks of at least one byte, limit %d bytes", ErrBodyTooLarge, count, r.maxBody)
	}
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("%w: empty chunk %d", ErrMalformed, index)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	key := partialKey{m.Type(), id}
	p := r.pending[key]
	if p == nil {
		r.evict()
		r.seq++
		p = &partial{seq: r.seq, count: count, pieces: make(map[int][]byte)}
		r.pending[key] = p
	}
	fail := func(err error) (Message, []byte, error) {
		delete(r.pending, key)
		return nil, nil, err
	}
	switch {
	case count != p.count:
		return fail(fmt.Errorf("%w: chunk_count %d, earlier chunks said %d", ErrMalformed, count, p.count))
	case p.pieces[index] != nil:
		return fail(fmt.Errorf("%w: chunk %d received twice", ErrMalformed, index))
	}
	if index == 0 {
		switch {
		case size > r.maxBody:
			return fail(fmt.Errorf("%w: body_size %d, limit %d", ErrBodyTooLarge, size, r.maxBody))
		case int64(count) > size:
			return fail(fmt.Errorf("%w: chunk_count %d exceeds body_size %d", ErrMalformed, count, size))
		}
		p.first, p.size = m, size
	}
	p.received += int64(len(data))
	switch {
	case p.received > r.maxBody:
		return fail(fmt.Errorf("%w: over %d bytes received", ErrBodyTooLarge, r.maxBody))
	case p.first != nil && p.received > p.size:
		return fail(fmt.Errorf("%w: pieces exceed body_size %d", ErrMalformed, p.size))
	}
	p.pieces[index] = data
	if len(p.pieces) < p.count || p.first == nil {
		return nil, nil, nil
	}
	delete(r.pending, key)
	if p.received != p.size {
		return nil, nil, fmt.Errorf("%w: pieces add up to %d bytes, body_size %d", ErrMalformed, p.received, p.size)
	}
	body := make([]byte, 0, p.size)
	for i := range p.count {
		body = append(body, p.pieces[i]...)
	}
	clearChunk(p.first)
	return p.first, body, nil
}

// Pending returns the number of incomplete bodies held.
func (r *Reassembler) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// evict drops the oldest incomplete body while the Reassembler is full.
// Linear in maxPending, which is small, and only run when a body starts.
func (r *Reassembler) evict() {
	for len(r.pending) >= r.maxPending {
		var oldest partialKey
		var seq uint64
		for k, p := range r.pending {
			if seq == 0 || p.seq < seq {
				oldest, seq = k, p.seq
			}
		}
		delete(r.pending, oldest)
	}
}

func clearChunk(m Message) {
	switch m := m.(type) {
	case *HTTPRequest:
		m.Body, m.ChunkIndex, m.ChunkCount, m.BodySize = "", 0, 0, 0
	case *HTTPResponse:
		m.Body, m.ChunkIndex, m.ChunkCount, m.BodySize = "", 0, 0, 0
	}
}
