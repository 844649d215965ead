package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/http-tunnel/tunnel/store"
)

// The value of a record key is one binary string, layout version 1, all
// integers big-endian:
//
//	offset  size  field
//	0       1     layout version (1)
//	1       8     ExpiresAt, Unix milliseconds, signed; 0 means no expiry
//	9       8     CreatedAt, Unix milliseconds, signed
//	17      2+n   ConnectionID: uint16 length n, then n bytes
//	...     2+n   Owner
//	...     2+n   Node
//	...     2+n   PublicURL
//
// One string rather than a hash because a Redis hash with any value longer
// than hash-max-listpack-value (64 bytes by default, easily passed by a
// PublicURL) switches to a table encoding that more than doubles its size.
// Binary rather than JSON because it is smaller still, decodes without
// allocating (the fields are substrings of the reply), and lets the scripts
// read and rewrite the expiry at a fixed offset with Lua's struct library,
// without re-encoding numbers. By MEMORY USAGE on Redis 7.0, the record
// described in the package doc takes 232 bytes in this layout, 264 as
// JSON or as a hash with one-letter fields, and 656 as that hash once its
// URL is longer than 64 bytes. The tunnel ID is not stored: it is in the
// key. The scripts in scripts.go depend on this layout; change both
// together, and bump the version.
const (
	layoutVersion = 1
	// headerLen is the size of the fixed part: version and two times.
	headerLen = 17
	// maxField is the longest string field the layout can hold.
	maxField = math.MaxUint16
)

// errCorrupt is wrapped by decode for a value that is not a record of this
// layout.
var errCorrupt = errors.New("corrupt record value")

// expiryMillis encodes an ExpiresAt: 0 for the zero time (no expiry), its
// Unix milliseconds otherwise. A non-zero time at or before 1970 would
// collide with that 0 or go negative, so it is encoded as 1: it has expired
// either way, and the scripts treat it so.
func expiryMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixMilli(), 1)
}

// fromMillis decodes a time encoded by UnixMilli. The zero time survives,
// because time.UnixMilli of its milliseconds, in UTC, is time.Time{}.
func fromMillis(ms int64) time.Time {
	return time.UnixMilli(ms).UTC()
}

// encode returns r in the record layout. It fails only if a string field is
// longer than maxField bytes.
func encode(r store.Record) ([]byte, error) {
	fields := [...]struct {
		name, val string
	}{
		{"ConnectionID", r.ConnectionID},
		{"Owner", r.Owner},
		{"Node", r.Node},
		{"PublicURL", r.PublicURL},
	}
	n := headerLen
	for _, f := range fields {
		if len(f.val) > maxField {
			return nil, fmt.Errorf("%s is %d bytes, more than the %d a record holds", f.name, len(f.val), maxField)
		}
		n += 2 + len(f.val)
	}
	b := make([]byte, 0, n)
	b = append(b, layoutVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(expiryMillis(r.ExpiresAt)))
	b = binary.BigEndian.AppendUint64(b, uint64(r.CreatedAt.UnixMilli()))
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.val)))
		b = append(b, f.val...)
	}
	return b, nil
}

// decode parses a value written by encode into a record for tunnelID. The
// string fields of the result share v's memory.
func decode(tunnelID, v string) (store.Record, error) {
	if len(v) < headerLen || v[0] != layoutVersion {
		return store.Record{}, errCorrupt
	}
	r := store.Record{TunnelID: tunnelID}
	if ms := int64(uint64At(v, 1)); ms != 0 {
		r.ExpiresAt = fromMillis(ms)
	}
	r.CreatedAt = fromMillis(int64(uint64At(v, 9)))
	rest := v[headerLen:]
	for _, f := range [...]*string{&r.ConnectionID, &r.Owner, &r.Node, &r.PublicURL} {
		if len(rest) < 2 {
			return store.Record{}, errCorrupt
		}
		n := int(rest[0])<<8 | int(rest[1])
		if len(rest) < 2+n {
			return store.Record{}, errCorrupt
		}
		*f, rest = rest[2:2+n], rest[2+n:]
	}
	if rest != "" {
		return store.Record{}, errCorrupt
	}
	return r, nil
}

// uint64At reads the big-endian uint64 at s[i:i+8]. It is
// binary.BigEndian.Uint64 for a string, which would otherwise need a copy
// of s into a []byte.
func uint64At(s string, i int) uint64 {
	_ = s[i+7] // one bounds check for the eight reads
	return uint64(s[i])<<56 | uint64(s[i+1])<<48 | uint64(s[i+2])<<40 | uint64(s[i+3])<<32 |
		uint64(s[i+4])<<24 | uint64(s[i+5])<<16 | uint64(s[i+6])<<8 | uint64(s[i+7])
}
