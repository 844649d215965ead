package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/http-tunnel/tunnel/store"
)

// The value of a plain tunnel's record key, and of each member in a
// pool's members hash, is one binary string, layout version 3, all
// integers big-endian (a pool's record key holds a marker instead, layout
// version 4: see poolLayout):
//
//	offset  size  field
//	0       1     layout version (3)
//	1       8     ExpiresAt, Unix milliseconds, signed; 0 means no expiry
//	9       8     CreatedAt, Unix milliseconds, signed
//	17      1     flags: bit 0 is Released; the other bits are zero
//	18      2     Version, unsigned
//	20      2+n   ConnectionID: uint16 length n, then n bytes
//	...     2+n   Owner
//	...     2+n   Node
//	...     2+n   PublicURL
//	...     2+n   Subject
//	...     2+n   Access, its bytes as they are
//
// Layout version 2, written by the release before Access existed, is
// version 3 without Access. Layout version 1, written by releases before
// Subject, Version and Released existed, is version 2 without the flags
// and Version (its strings start at offset 17) and without Subject. Both
// are still read, as records with Access "" and, for version 1, Subject "",
// Version 0 and Released false, by decode and by the scripts. Renew leaves
// such a value in its version, and so does Release a version-2 value; a
// version-1 value Release rewrites in version 3, since version 1 has
// nowhere to keep the mark. Everything that reads or writes at a fixed
// offset (the expiry at 1, the flags at 17) therefore finds the expiry
// where every version keeps it, and the flags where versions 2 and 3 do.
// Access comes last so that what the scripts read, which it is not part
// of, is where versions 2 and 3 both have it.
//
// One string rather than a hash because a Redis hash with any value longer
// than hash-max-listpack-value (64 bytes by default, passed by a long
// PublicURL and by almost any Access) switches to a table encoding that
// more than doubles its size. Binary rather than JSON because it is
// smaller, keeps Access's bytes without escaping them, decodes without
// allocating (the fields are substrings of the reply), and lets the
// scripts read and rewrite the expiry and the flags at fixed offsets with
// Lua's struct library, without re-encoding numbers. By MEMORY USAGE on
// Redis 7.0, the record described in the package doc takes 264 bytes in
// this layout (a 159-byte value), 296 as JSON with one-letter names, 264
// as a hash with one-letter fields and 704 as that hash once its URL is
// longer than 64 bytes; with a 200-byte Access, 456 bytes in this layout,
// 520 as JSON (more once the policy's quotes are escaped) and 1056 as a
// hash. Layout version 2 held the record without Access in 264 bytes too,
// and version 1 held it less its Subject and Version in 232, which is
// also what version 3 takes without a Subject: the bytes each version
// added stay within the allocator's size class. The tunnel ID is not
// stored: it is in the key. The scripts in scripts.go depend on this
// layout; change both together, and bump the version.
const (
	layoutVersion = 3
	// headerLen is the size of the fixed part: layout version, two
	// times, flags and Version.
	headerLen = 20
	// flagsOffset is where the flags byte is, and flagReleased its bit
	// for Released.
	flagsOffset  = 17
	flagReleased = 1

	// layoutV2 and layoutV1 are the versions still read. Version 2 has
	// version 3's fixed part; headerLenV1 is version 1's: layout version
	// and two times.
	layoutV2    = 2
	layoutV1    = 1
	headerLenV1 = 17

	// maxField is the longest string field the layout can hold, and
	// maxVersion the largest Version.
	maxField   = math.MaxUint16
	maxVersion = math.MaxUint16
)

// errCorrupt is wrapped by decode for a value that is not a record of a
// layout this package reads.
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

// encode returns r in the record layout, version 3. It fails only if a
// string field, Access included, is longer than maxField bytes or Version
// is outside 0..maxVersion.
func encode(r store.Record) ([]byte, error) {
	fields := [...]struct {
		name, val string
	}{
		{"ConnectionID", r.ConnectionID},
		{"Owner", r.Owner},
		{"Node", r.Node},
		{"PublicURL", r.PublicURL},
		{"Subject", r.Subject},
		{"Access", r.Access},
	}
	if r.Version < 0 || r.Version > maxVersion {
		return nil, fmt.Errorf("protocol Version %d is outside the 0 to %d a record holds", r.Version, maxVersion)
	}
	n := headerLen
	for _, f := range fields {
		if len(f.val) > maxField {
			return nil, fmt.Errorf("%s is %d bytes, more than the %d a record holds", f.name, len(f.val), maxField)
		}
		n += 2 + len(f.val)
	}
	var flags byte
	if r.Released {
		flags |= flagReleased
	}
	b := make([]byte, 0, n)
	b = append(b, layoutVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(expiryMillis(r.ExpiresAt)))
	b = binary.BigEndian.AppendUint64(b, uint64(r.CreatedAt.UnixMilli()))
	b = append(b, flags)
	b = binary.BigEndian.AppendUint16(b, uint16(r.Version))
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.val)))
		b = append(b, f.val...)
	}
	return b, nil
}

// decode parses a value in layout version 3, 2 or 1 into a record for
// tunnelID. The string fields of the result share v's memory.
func decode(tunnelID, v string) (store.Record, error) {
	r := store.Record{TunnelID: tunnelID}
	var rest string
	strs := [...]*string{&r.ConnectionID, &r.Owner, &r.Node, &r.PublicURL, &r.Subject, &r.Access}
	nstrs := len(strs)
	switch {
	case len(v) >= headerLen && (v[0] == layoutVersion || v[0] == layoutV2):
		flags := v[flagsOffset]
		if flags&^flagReleased != 0 {
			return store.Record{}, errCorrupt
		}
		r.Released = flags&flagReleased != 0
		r.Version = int(v[flagsOffset+1])<<8 | int(v[flagsOffset+2])
		if v[0] == layoutV2 {
			nstrs-- // no Access
		}
		rest = v[headerLen:]
	case len(v) >= headerLenV1 && v[0] == layoutV1:
		nstrs -= 2 // no Subject, no Access
		rest = v[headerLenV1:]
	default:
		return store.Record{}, errCorrupt
	}
	if ms := int64(uint64At(v, 1)); ms != 0 {
		r.ExpiresAt = fromMillis(ms)
	}
	r.CreatedAt = fromMillis(int64(uint64At(v, 9)))
	for _, f := range strs[:nstrs] {
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

// poolLayout is the layout version of a pool marker: the value of a pool's
// record key, which says that the tunnel is a pool and whose it is, while
// the members are in the pool's own keys (see the package doc):
//
//	offset  size  field
//	0       1     layout version (4)
//	1       2+n   Owner: uint16 length n, then n bytes
//
// Releases before pools refuse it as a record of an unknown layout, so
// they never take a pool's tunnel ID for free or for a record of theirs.
const poolLayout = 4

// encodePoolMarker returns the pool marker of a pool owned by owner, which
// encode has checked is at most maxField bytes long.
func encodePoolMarker(owner string) []byte {
	b := make([]byte, 0, 3+len(owner))
	b = append(b, poolLayout)
	b = binary.BigEndian.AppendUint16(b, uint16(len(owner)))
	return append(b, owner...)
}

// decodeAs is decode for a record of tunnelID that the scripts found as a
// pool's member (pool) or as a plain record: a member's value is a record
// in layout version 3, and its Pool comes from where it is kept.
func decodeAs(tunnelID, v string, pool bool) (store.Record, error) {
	r, err := decode(tunnelID, v)
	r.Pool = pool && err == nil
	return r, err
}
