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
		CreatedAt:    time.UnixMilli(0x0102030405).Add(999 * time.Microsecond), // truncated
		ExpiresAt:    time.UnixMilli(0x1112131415),
	}
	want := "01" + // version
		"0000001112131415" + // ExpiresAt ms
		"0000000102030405" + // CreatedAt ms
		"0002" + hex.EncodeToString([]byte("c1")) +
		"0003" + hex.EncodeToString([]byte("own")) +
		"0000" +
		"0009" + hex.EncodeToString([]byte("https://x"))
	got, err := encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got) != want {
		t.Errorf("encode =\n%x\nwant\n%s", got, want)
	}
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
			PublicURL: "https://myapp.tunnel.example", CreatedAt: base, ExpiresAt: base.Add(time.Hour),
		}},
		{"Empty", store.Record{}},
		{"ZeroTimes", store.Record{TunnelID: "t", ConnectionID: "c", Owner: "o"}},
		{"BeforeEpochCreatedAt", store.Record{TunnelID: "t", CreatedAt: time.Date(1, 1, 1, 0, 0, 0, 1_000_000, time.UTC)}},
		{"BinaryStrings", store.Record{TunnelID: "t", ConnectionID: "\x00\xff", Owner: "\x01\x00\x02", Node: "ü"}},
		{"LongestField", store.Record{TunnelID: "t", PublicURL: strings.Repeat("u", maxField)}},
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
	valid, err := encode(store.Record{ConnectionID: "c", Owner: "o", Node: "n", PublicURL: "u"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		v    string
	}{
		{"Empty", ""},
		{"ShortHeader", string(valid[:headerLen-1])},
		{"OtherVersion", "\x02" + string(valid[1:])},
		{"MissingField", string(valid[:headerLen+3])},
		{"LengthPastEnd", string(valid[:len(valid)-1])},
		{"TrailingBytes", string(valid) + "x"},
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
// exactly what encode writes for the record it returns. (A negative expiry
// is the exception: encode never writes one, and would write 1.)
func FuzzDecode(f *testing.F) {
	for _, r := range []store.Record{
		{},
		{ConnectionID: "conn", Owner: "owner", Node: "node", PublicURL: "https://t.example",
			CreatedAt: time.UnixMilli(1_795_681_975_608), ExpiresAt: time.UnixMilli(1_795_685_575_608)},
	} {
		b, err := encode(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, err := decode("t", v)
		if err != nil {
			return
		}
		if int64(uint64At(v, 1)) < 0 {
			return
		}
		b, err := encode(r)
		if err != nil {
			t.Fatalf("encode(decode(%x)): %v", v, err)
		}
		if !bytes.Equal(b, []byte(v)) {
			t.Errorf("encode(decode(%x)) = %x", v, b)
		}
	})
}

// benchRecord is a record of typical size: random IDs, an owner hash and a
// URL under a short domain.
var benchRecord = store.Record{
	TunnelID:     "k3v9q2m8x7w1p4z6",
	ConnectionID: "c0123456789abcdef",
	Owner:        "5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76",
	Node:         "node-a",
	PublicURL:    "https://k3v9q2m8x7w1p4z6.tunnel.example",
	CreatedAt:    time.UnixMilli(1_795_681_975_608),
	ExpiresAt:    time.UnixMilli(1_795_685_575_608),
}

func BenchmarkEncode(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encode(benchRecord); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	v, err := encode(benchRecord)
	if err != nil {
		b.Fatal(err)
	}
	s := string(v)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decode(benchRecord.TunnelID, s); err != nil {
			b.Fatal(err)
		}
	}
}
