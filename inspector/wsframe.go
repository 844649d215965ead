package inspector

import "encoding/binary"

// frameParser reads RFC 6455 frames (section 5.2) off one direction of a
// connection, as the bytes come, in pieces of any size. It does not
// enforce the protocol (the endpoints do); it only needs each frame's
// length to find the next one.
type frameParser struct {
	hdr       [14]byte
	hn        int   // bytes of hdr read
	remaining int64 // payload bytes of the current frame still to come
	inPayload bool
	key       [4]byte
	masked    bool
	pos       int64 // offset in the current payload
	idx       int   // the current frame's index in Exchange.Frames, or -1
}

// frameHeader is a parsed frame header.
type frameHeader struct {
	fin    bool
	opcode byte
	masked bool
	key    [4]byte
	length int64
}

// parseFrameHeader parses a frame header from the start of b. It returns
// the header's length in bytes, or 0 if b does not hold all of it yet.
func parseFrameHeader(b []byte) (frameHeader, int) {
	if len(b) < 2 {
		return frameHeader{}, 0
	}
	h := frameHeader{fin: b[0]&0x80 != 0, opcode: b[0] & 0x0f, masked: b[1]&0x80 != 0}
	n := 2
	switch l := b[1] & 0x7f; l {
	case 126:
		n += 2
	case 127:
		n += 8
	default:
		h.length = int64(l)
	}
	if h.masked {
		n += 4
	}
	if len(b) < n {
		return frameHeader{}, 0
	}
	switch b[1] & 0x7f {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		// The most significant bit must be 0; a peer that sets it breaks
		// the protocol, and the length is taken as the largest.
		h.length = int64(binary.BigEndian.Uint64(b[2:]) &^ (1 << 63))
	}
	if h.masked {
		copy(h.key[:], b[n-4:n])
	}
	return h, n
}

// feed parses p, bytes of the direction, recording frames to e.
func (f *frameParser) feed(p []byte, r *Recorder, e *entry, fromClient bool) {
	for len(p) > 0 {
		if !f.inPayload {
			// Fill the header: two bytes, then as many as those say.
			k := copy(f.hdr[f.hn:], p)
			h, n := parseFrameHeader(f.hdr[:f.hn+k])
			if n == 0 {
				f.hn += k
				p = p[k:]
				continue
			}
			p = p[n-f.hn:]
			f.hn = 0
			f.remaining, f.pos = h.length, 0
			f.masked, f.key = h.masked, h.key
			f.idx = r.addFrame(e, Frame{
				Time:       r.now(),
				FromClient: fromClient,
				Opcode:     h.opcode,
				Fin:        h.fin,
				Length:     h.length,
			})
			f.inPayload = f.remaining > 0
			continue
		}
		n := int64(len(p))
		if n > f.remaining {
			n = f.remaining
		}
		if f.idx >= 0 {
			r.appendPayload(e, f.idx, p[:n], f.masked, f.key, f.pos)
		}
		p = p[n:]
		f.pos += n
		f.remaining -= n
		f.inPayload = f.remaining > 0
	}
}

// addFrame records a frame's header, with room for as much of its payload
// as the direction's budget allows, and returns its index, or -1 if it is
// only counted.
func (r *Recorder) addFrame(e *entry, fr Frame) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.ex.FrameCount++
	dir := 0
	if fr.FromClient {
		dir = 1
	}
	budget := &e.frameBudget[dir]
	if !e.inLog || *budget < frameOverhead {
		return -1
	}
	keep := min(fr.Length, *budget-frameOverhead)
	*budget -= frameOverhead + keep
	r.growLocked(e, frameOverhead+keep)
	if !e.inLog {
		return -1
	}
	if keep > 0 {
		fr.Payload = make([]byte, 0, keep)
	}
	e.ex.Frames = append(e.ex.Frames, fr)
	return len(e.ex.Frames) - 1
}

// appendPayload adds p, bytes of the payload of frame idx starting at
// offset pos, unmasking them with key if masked.
func (r *Recorder) appendPayload(e *entry, idx int, p []byte, masked bool, key [4]byte, pos int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !e.inLog || idx >= len(e.ex.Frames) {
		return
	}
	fr := &e.ex.Frames[idx]
	n := min(len(p), cap(fr.Payload)-len(fr.Payload))
	if n <= 0 {
		return
	}
	start := len(fr.Payload)
	fr.Payload = append(fr.Payload, p[:n]...)
	if masked {
		for i := range n {
			fr.Payload[start+i] ^= key[(pos+int64(i))&3]
		}
	}
}
