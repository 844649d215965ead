package redisstore

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/store"
)

// TestEncodeLayout pins the record layout byte for byte. The Lua scripts
// read it on the server, and nodes of different versions share it, so a
// change here must be a new layout version, not an edit.
func TestEncodeLayout(t *testing.T) {
	r := store.Record{
		TunnelID:     "myapp", // not encoded: it is in the key
		ConnectionID: "c1",
		Owner:        "own",
		Node:         "",
		PublicURL:    "https://x",
		Subject:      "sub",
		Version:      0x0102,
		Access:       "{\x00\xff}",
		Released:     true,
		CreatedAt:    time.UnixMilli(0x0102030405).Add(999 * time.Microsecond), // truncated
		ExpiresAt:    time.UnixMilli(0x1112131415),
	}
	want := "03" + // layout version
		"0000001112131415" + // ExpiresAt ms
		"0000000102030405" + // CreatedAt ms
		"01" + // flags: Released
		"0102" + // Version
		"0002" + hex.EncodeToString([]byte("c1")) +
		"0003" + hex.EncodeToString([]byte("own")) +
		"0000" +
		"0009" + hex.EncodeToString([]byte("https://x")) +
		"0003" + hex.EncodeToString([]byte("sub")) +
		"0004" + "7b00ff7d" // Access, as it is
	got, err := encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got) != want {
		t.Errorf("encode =\n%x\nwant\n%s", got, want)
	}
	// The offsets the scripts use.
	if got[flagsOffset] != flagReleased || got[0] != layoutVersion || headerLen != flagsOffset+3 {
		t.Errorf("flags at %d = %#x, version %d, header %d bytes; the scripts expect Released (1) at 17, version 3, 20 bytes",
			flagsOffset, got[flagsOffset], got[0], headerLen)
	}
}

// TestEncodePoolMarker pins the pool marker byte for byte, as
// TestEncodeLayout pins records: the scripts read it, and its version
// byte is what makes older releases refuse it.
func TestEncodePoolMarker(t *testing.T) {
	tests := []struct {
		owner, want string
	}{
		{"own", "04" + "0003" + hex.EncodeToString([]byte("own"))},
		{"", "04" + "0000"},
		{"\x00\xff", "04" + "0002" + "00ff"},
	}
	for _, tt := range tests {
		if got := hex.EncodeToString(encodePoolMarker(tt.owner)); got != tt.want {
			t.Errorf("encodePoolMarker(%q) = %s, want %s", tt.owner, got, tt.want)
		}
	}
	if poolLayout == layoutVersion || poolLayout == layoutV2 || poolLayout == layoutV1 {
		t.Errorf("the marker's layout version %d is a record's", poolLayout)
	}
	// decode refuses a marker: a script that handed one over as a
	// record would be a bug, not a record with no fields.
	if r, err := decode("t", string(encodePoolMarker("own"))); !errors.Is(err, errCorrupt) {
		t.Errorf("decode(marker) = %+v, %v; want errCorrupt", r, err)
	}
}

// layoutV2Hex is the record of TestEncodeLayout without Access, as the
// release before Access wrote it.
const layoutV2Hex = "02" + // layout version
	"0000001112131415" + // ExpiresAt ms
	"0000000102030405" + // CreatedAt ms
	"01" + // flags: Released
	"0102" + // Version
	"0002" + "6331" + // "c1"
	"0003" + "6f776e" + // "own"
	"0000" +
	"0009" + "68747470733a2f2f78" + // "https://x"
	"0003" + "737562" // "sub"

// layoutV1Hex is the record of TestEncodeLayout without Subject, Version,
// Released and Access, as a release before them wrote it.
const layoutV1Hex = "01" + // layout version
	"0000001112131415" + // ExpiresAt ms
	"0000000102030405" + // CreatedAt ms
	"0002" + "6331" + // "c1"
	"0003" + "6f776e" + // "own"
	"0000" +
	"0009" + "68747470733a2f2f78" // "https://x"

// TestDecodeOlderLayouts checks that values older releases wrote still
// decode, with the zero values of the fields their layouts lack, and that
// the encoders the tests use for them write exactly those values.
func TestDecodeOlderLayouts(t *testing.T) {
	v1 := store.Record{
		TunnelID: "myapp", ConnectionID: "c1", Owner: "own", PublicURL: "https://x",
		CreatedAt: time.UnixMilli(0x0102030405).UTC(), ExpiresAt: time.UnixMilli(0x1112131415).UTC(),
	}
	v2 := v1
	v2.Subject, v2.Version, v2.Released = "sub", 0x0102, true
	tests := []struct {
		name   string
		hex    string
		want   store.Record
		encode func(store.Record) ([]byte, error)
	}{
		{"V2", layoutV2Hex, v2, encodeV2},
		{"V1", layoutV1Hex, v1, encodeV1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decode("myapp", string(v))
			if err != nil {
				t.Fatalf("decode = %v", err)
			}
			if got != tt.want {
				t.Errorf("decode = %+v, want %+v", got, tt.want)
			}
			// The encoder drops what the layout cannot hold.
			in := tt.want
			in.Access = "dropped"
			if b, err := tt.encode(in); err != nil || hex.EncodeToString(b) != tt.hex {
				t.Errorf("encode = %x, %v; want %s", b, err, tt.hex)
			}
		})
	}
}

// encodeV2 returns r in layout version 2, as the release before layout 3
// wrote it, for tests of what this one reads. It drops Access, which
// version 2 cannot hold.
func encodeV2(r store.Record) ([]byte, error) {
	r.Access = ""
	b, err := encode(r)
	if err != nil {
		return nil, err
	}
	// Version 3 of that record is version 2 with an empty Access appended.
	b[0] = layoutV2
	return b[:len(b)-2], nil
}

// encodeV1 returns r in layout version 1, as releases before layout 2
// wrote it, for tests of what this one reads. It drops Subject, Version,
// Released and Access, which version 1 cannot hold.
func encodeV1(r store.Record) ([]byte, error) {
	b, err := encodeV2(store.Record{
		ConnectionID: r.ConnectionID, Owner: r.Owner, Node: r.Node, PublicURL: r.PublicURL,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
	})
	if err != nil {
		return nil, err
	}
	// Version 2 of that record is version 1 with the flags and Version
	// inserted after the times and an empty Subject appended.
	v1 := append([]byte{layoutV1}, b[1:headerLenV1]...)
	return append(v1, b[headerLen:len(b)-2]...), nil
}

// TestExpiryMillis checks the expiry encoding: 0 only for the zero time,
// and never 0 or negative for a time that has passed.
func TestExpiryMillis(t *testing.T) {
	epoch := time.Unix(0, 0)
	tests := []struct {
		name string
		in   time.Time
		want int64
	}{
		{"Zero", time.Time{}, 0},
		{"Epoch", epoch, 1},
		{"WithinFirstMillisecond", epoch.Add(999 * time.Microsecond), 1},
		{"BeforeEpoch", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), 1},
		{"Truncated", epoch.Add(5*time.Second + 999*time.Microsecond), 5000},
		{"Ordinary", time.UnixMilli(1_795_685_575_608), 1_795_685_575_608},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := expiryMillis(tt.in); got != tt.want {
				t.Errorf("expiryMillis(%v) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

// TestRoundTrip checks that decode(encode(r)) is r to the millisecond,
// including the zero times, which must come back zero.
func TestRoundTrip(t *testing.T) {
	base := time.Date(2030, 1, 2, 3, 4, 5, 678_901_234, time.FixedZone("UTC+5", 5*60*60))
	tests := []struct {
		name string
		r    store.Record
	}{
		{"AllFields", store.Record{
			TunnelID: "myapp", ConnectionID: "conn-1", Owner: "alice", Node: "node-a",
			PublicURL: "https://myapp.tunnel.example", Subject: "alice@example.com", Version: 1,
			Released: true, CreatedAt: base, ExpiresAt: base.Add(time.Hour),
		}},
		{"Empty", store.Record{}},
		{"LargestVersion", store.Record{TunnelID: "t", Version: maxVersion}},
		{"OnlySubject", store.Record{TunnelID: "t", Subject: "s"}},
		{"ZeroTimes", store.Record{TunnelID: "t", ConnectionID: "c", Owner: "o"}},
		{"BeforeEpochCreatedAt", store.Record{TunnelID: "t", CreatedAt: time.Date(1, 1, 1, 0, 0, 0, 1_000_000, time.UTC)}},
		{"BinaryStrings", store.Record{TunnelID: "t", ConnectionID: "\x00\xff", Owner: "\x01\x00\x02", Node: "ü"}},
		{"LongestField", store.Record{TunnelID: "t", PublicURL: strings.Repeat("u", maxField)}},
		{"LongestSubject", store.Record{TunnelID: "t", Subject: strings.Repeat("s", maxField)}},
		{"OnlyAccess", store.Record{TunnelID: "t", Access: `{"allow":["192.0.2.0/24"]}`}},
		{"BinaryAccess", store.Record{TunnelID: "t", Subject: "s", Access: "\x00\xff\xc0\x80\x00"}},
		{"LongestAccess", store.Record{TunnelID: "t", Access: strings.Repeat("\x00a\xff", maxField/3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := encode(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decode(tt.r.TunnelID, string(b))
			if err != nil {
				t.Fatal(err)
			}
			want := tt.r
			times := []struct {
				name      string
				got, want time.Time
			}{
				{"CreatedAt", got.CreatedAt, truncMillis(want.CreatedAt)},
				{"ExpiresAt", got.ExpiresAt, truncMillis(want.ExpiresAt)},
			}
			for _, tm := range times {
				// Documented: millisecond precision, zero stays zero, UTC.
				if !tm.got.Equal(tm.want) || tm.got.IsZero() != tm.want.IsZero() || tm.got.Location() != time.UTC {
					t.Errorf("%s = %v, want %v in UTC", tm.name, tm.got, tm.want)
				}
			}
			got.CreatedAt, got.ExpiresAt = want.CreatedAt, want.ExpiresAt
			if got != want {
				t.Errorf("decode(encode(r)) = %+v, want %+v", got, want)
			}
		})
	}
}

// truncMillis truncates t to the millisecond, as encode does: toward the
// past, also before 1970, where Time.Truncate would go toward year 1.
func truncMillis(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli())
}

// TestEncodeFieldTooLong checks that encode refuses, naming the field,
// what the layout cannot hold.
func TestEncodeFieldTooLong(t *testing.T) {
	long := strings.Repeat("x", maxField+1)
	tests := []struct {
		name string
		r    store.Record
	}{
		{"ConnectionID", store.Record{ConnectionID: long}},
		{"Owner", store.Record{Owner: long}},
		{"Node", store.Record{Node: long}},
		{"PublicURL", store.Record{PublicURL: long}},
		{"Subject", store.Record{Subject: long}},
		{"Access", store.Record{Access: long}},
		{"Version", store.Record{Version: maxVersion + 1}},
		{"Version", store.Record{Version: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if b, err := encode(tt.r); err == nil || !strings.Contains(err.Error(), tt.name) {
				t.Errorf("encode = %d bytes, %v; want an error naming %s", len(b), err, tt.name)
			}
		})
	}
}

func TestDecodeCorrupt(t *testing.T) {
	r := store.Record{ConnectionID: "c", Owner: "o", Node: "n", PublicURL: "u", Subject: "s", Access: "a"}
	valid, err := encode(r)
	if err != nil {
		t.Fatal(err)
	}
	validV2, err := encodeV2(r)
	if err != nil {
		t.Fatal(err)
	}
	validV1, err := encodeV1(r)
	if err != nil {
		t.Fatal(err)
	}
	withFlags := func(v []byte, f byte) string {
		b := bytes.Clone(v)
		b[flagsOffset] = f
		return string(b)
	}
	tests := []struct {
		name string
		v    string
	}{
		{"Empty", ""},
		{"ShortHeader", string(valid[:headerLen-1])},
		{"OtherVersion", "\x04" + string(valid[1:])},
		{"VersionZero", "\x00" + string(valid[1:])},
		{"UnknownFlag", withFlags(valid, 2)},
		{"UnknownFlagWithReleased", withFlags(valid, 0x81)},
		{"MissingField", string(valid[:headerLen+3])},
		{"MissingSubject", string(valid[:len(valid)-6])},
		{"MissingAccess", string(valid[:len(valid)-3])},
		{"LengthPastEnd", string(valid[:len(valid)-1])},
		{"TrailingBytes", string(valid) + "x"},
		{"V2ShortHeader", string(validV2[:headerLen-1])},
		{"V2UnknownFlag", withFlags(validV2, 2)},
		{"V2MissingSubject", string(validV2[:len(validV2)-3])},
		{"V2LengthPastEnd", string(validV2[:len(validV2)-1])},
		{"V2TrailingBytes", string(validV2) + "x"},
		{"V2WithAccess", "\x02" + string(valid[1:])},
		{"V1ShortHeader", string(validV1[:headerLenV1-1])},
		{"V1MissingField", string(validV1[:headerLenV1+3])},
		{"V1LengthPastEnd", string(validV1[:len(validV1)-1])},
		{"V1TrailingBytes", string(validV1) + "x"},
		{"V1WithSubject", string(validV1) + "\x00\x01s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if r, err := decode("t", tt.v); !errors.Is(err, errCorrupt) {
				t.Errorf("decode(%x) = %+v, %v; want errCorrupt", tt.v, r, err)
			}
		})
	}
}

// FuzzDecode checks that decode never panics, and that what it accepts is
// exactly what encode writes for the record it returns (a negative expiry
// is the exception: encode never writes one, and would write 1). A value
// of an older layout it accepts must be what that layout's encoder writes,
// its record must lack what that layout cannot hold, and it must be the
// record of the version-3 value that this release makes of it: a
// version-2 value with an empty Access appended (any rewrite), a version-1
// value as Release rewrites it, less the mark (the flags and Version
// inserted at 17, an empty Subject and an empty Access appended).
func FuzzDecode(f *testing.F) {
	for _, r := range []store.Record{
		{},
		{ConnectionID: "conn", Owner: "owner", Node: "node", PublicURL: "https://t.example",
			Subject: "alice@example.com", Version: 1, Access: "{\"allow\":[\"192.0.2.0/24\"]}\x00\xff", Released: true,
			CreatedAt: time.UnixMilli(1_795_681_975_608), ExpiresAt: time.UnixMilli(1_795_685_575_608)},
	} {
		for _, enc := range []func(store.Record) ([]byte, error){encode, encodeV2, encodeV1} {
			b, err := enc(r)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(string(b))
		}
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, err := decode("t", v)
		if err != nil {
			return
		}
		if int64(uint64At(v, 1)) < 0 {
			return
		}
		want := v
		switch v[0] {
		case layoutV2:
			if r.Access != "" {
				t.Fatalf("decode(%x), version 2, = %+v; want no Access", v, r)
			}
			b, err := encodeV2(r)
			if err != nil || !bytes.Equal(b, []byte(v)) {
				t.Errorf("encodeV2(decode(%x)) = %x, %v", v, b, err)
			}
			want = "\x03" + v[1:] + "\x00\x00"
		case layoutV1:
			if r.Subject != "" || r.Version != 0 || r.Released || r.Access != "" {
				t.Fatalf("decode(%x), version 1, = %+v; want no Subject, Version, Released or Access", v, r)
			}
			b, err := encodeV1(r)
			if err != nil || !bytes.Equal(b, []byte(v)) {
				t.Errorf("encodeV1(decode(%x)) = %x, %v", v, b, err)
			}
			want = "\x03" + v[1:headerLenV1] + "\x00\x00\x00" + v[headerLenV1:] + "\x00\x00\x00\x00"
		}
		b, err := encode(r)
		if err != nil {
			t.Fatalf("encode(decode(%x)): %v", v, err)
		}
		if !bytes.Equal(b, []byte(want)) {
			t.Errorf("encode(decode(%x)) = %x, want %x", v, b, want)
		}
	})
}

// benchRecord is the record the package doc measures: random IDs, an
// owner hash and a URL under a short domain, and no Access.
var benchRecord = store.Record{
	TunnelID:     "k3v9q2m8x7w1p4z6",
	ConnectionID: "c0123456789abcdef",
	Owner:        "5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76",
	Node:         "node-a",
	PublicURL:    "https://k3v9q2m8x7w1p4z6.tunnel.example",
	Subject:      "alice@example.com",
	Version:      1,
	CreatedAt:    time.UnixMilli(1_795_681_975_608),
	ExpiresAt:    time.UnixMilli(1_795_685_575_608),
}

// benchAccess is an Access of the size the package doc measures, 200
// bytes: a hashed credential and a few address ranges.
var benchAccess = `{"basic":[{"user":"ci","salt":"q8Zt0wXk2Lp9Ab4","hash":"9b74c9897bac770ffc029102a200c5de9b74c9897bac"}],` +
	`"allow":["192.0.2.0/24","198.51.100.7/32","203.0.113.128/25","2001:db8::/48","2001:db8:1::/64"]}`

// benchRecords are benchRecord as measured in the docs: without Access
// and with benchAccess.
func benchRecords() []struct {
	name string
	r    store.Record
} {
	withAccess := benchRecord
	withAccess.Access = benchAccess
	return []struct {
		name string
		r    store.Record
	}{{"NoAccess", benchRecord}, {"Access200", withAccess}}
}

// TestDocumentedSizes checks the value lengths that the memory figures in
// the docs were measured for, so that a layout change that alters them
// shows the figures need measuring again (MEMORY USAGE of the record key
// under the default prefix).
func TestDocumentedSizes(t *testing.T) {
	if len(benchAccess) != 200 {
		t.Errorf("benchAccess is %d bytes, want 200", len(benchAccess))
	}
	if n := len(encodePoolMarker(benchRecord.Owner)); n != 51 {
		t.Errorf("the pool marker of benchRecord's owner is %d bytes, want the 51 the docs measured", n)
	}
	want := map[string]int{"NoAccess": 159, "Access200": 359}
	for _, br := range benchRecords() {
		b, err := encode(br.r)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != want[br.name] {
			t.Errorf("%s: value of %d bytes, want the %d the docs measured", br.name, len(b), want[br.name])
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, br := range benchRecords() {
		b.Run(br.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := encode(br.r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, br := range benchRecords() {
		b.Run(br.name, func(b *testing.B) {
			v, err := encode(br.r)
			if err != nil {
				b.Fatal(err)
			}
			s := string(v)
			b.SetBytes(int64(len(s)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decode(br.r.TunnelID, s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
