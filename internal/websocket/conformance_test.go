package websocket

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The cases of sections 1 to 7 of the Autobahn TestSuite
// (crossbario/autobahn-testsuite, autobahntestsuite/case/case1_1_1.py to
// case7_13_2.py), as raw frames: the bytes its fuzzer sends, and what it
// expects back from an implementation that echoes every message. Each case
// runs against both ends of this package: the server (Accept) fed masked
// frames by a raw client, and the client (Dial) fed unmasked frames by a
// raw server, each over loopback TCP.
//
// Where Autobahn accepts several outcomes (OK, NON-STRICT, a close or a
// dropped connection) the case states the one this package must give, and
// its note says why when that is not Autobahn's strict one. Two things are
// stricter than Autobahn: a failed connection must end with a close frame
// and its code, never a bare drop; and nothing may follow a close frame.
// Autobahn's timers (waiting a second to see that nothing happens) become a
// ping whose pong proves the connection still stands.

// wsFrame is a frame as a raw peer writes it (valid or not), or as it read
// one from the implementation.
type wsFrame struct {
	op      byte
	fin     bool
	rsv     byte // as Autobahn numbers it: 1 sets RSV3, 2 RSV2, 4 RSV1
	payload []byte
}

func frame(op byte, payload string) wsFrame {
	return wsFrame{op: op, fin: true, payload: []byte(payload)}
}

func text(p string) wsFrame   { return frame(OpText, p) }
func binMsg(p string) wsFrame { return frame(OpBinary, p) }
func cont(p string) wsFrame   { return frame(OpContinuation, p) }
func ping(p string) wsFrame   { return frame(OpPing, p) }
func pong(p string) wsFrame   { return frame(OpPong, p) }

// closeWith is a close frame with a code (any, even an invalid one) and a
// reason (any bytes).
func closeWith(code int, reason string) wsFrame {
	return frame(OpClose, string(binary.BigEndian.AppendUint16(nil, uint16(code)))+reason)
}

// more clears FIN: more fragments follow.
func (f wsFrame) more() wsFrame { f.fin = false; return f }

func (f wsFrame) withRSV(rsv byte) wsFrame { f.rsv = rsv; return f }

// fragments splits a message as Autobahn's sendMessage does with a
// fragment size: frames of size bytes and, when the payload is a multiple
// of size, an empty final frame.
func fragments(op byte, payload string, size int) []wsFrame {
	if len(payload) <= size {
		return []wsFrame{frame(op, payload)}
	}
	var out []wsFrame
	for i := 0; ; i += size {
		f := frame(OpContinuation, payload[i:min(i+size, len(payload))])
		if i == 0 {
			f.op = op
		}
		f.fin = i+size > len(payload)
		out = append(out, f)
		if f.fin {
			return out
		}
	}
}

// step is one thing a case does: write frames, then (if want is set) wait
// for the implementation's next message or pong.
type step struct {
	frames []wsFrame
	chop   int   // write the frames' bytes this many at a time; 0: all at once
	sync   bool  // one write per frame (Autobahn's sync)
	cuts   []int // split the single frame's write at these payload offsets
	want   *wsFrame
}

func send(frames ...wsFrame) step { return step{frames: frames} }

func sendSync(frames ...wsFrame) step { return step{frames: frames, sync: true} }

func sendChopped(n int, frames ...wsFrame) step { return step{frames: frames, chop: n} }

// sendSplit writes one frame in pieces that end at the payload offsets
// cuts, as Autobahn's sendMessageFrameData does: the peer has the frame's
// header and part of its payload, and waits for the rest.
func sendSplit(f wsFrame, cuts ...int) step { return step{frames: []wsFrame{f}, cuts: cuts} }

func want(f wsFrame) step { return step{want: &f} }

// probe replaces Autobahn's "wait a second and see that nothing happened":
// the pong shows the implementation read all that came before it without
// failing the connection.
func probe() step { f := pong("probe"); return step{frames: []wsFrame{ping("probe")}, want: &f} }

// ending is how a case ends: the implementation sends a close frame with
// code and closes the connection. Unless fails, the close is the echo of
// one from the test (the script's, or else a 1000 sent after the script).
// Code 1005 stands for a close frame without a code.
type ending struct {
	code  int
	fails bool
}

func closes(code int) ending    { return ending{code: code} }
func failsWith(code int) ending { return ending{code: code, fails: true} }

type conformanceCase struct {
	id     string
	script []step
	end    ending
	// note says where this differs from Autobahn's strict expectation, or
	// why Autobahn calls the outcome informational.
	note string
}

func steps(s ...step) []step { return s }

// echoes is the script of a case whose message comes back whole.
func echoes(frames ...wsFrame) []step {
	var joined []byte
	for _, f := range frames {
		joined = append(joined, f.payload...)
	}
	return steps(send(frames...), want(wsFrame{op: frames[0].op, fin: true, payload: joined}))
}

// byteRun is the bytes lo to hi-1, as Python's xrange gives them.
func byteRun(lo, hi int) string {
	var b []byte
	for i := lo; i < hi; i++ {
		b = append(b, byte(i))
	}
	return string(b)
}

// lonelyStarts is each byte from lo to hi-1 followed by a space: start
// bytes without their continuation (Autobahn 6.13).
func lonelyStarts(lo, hi int) string {
	var b []byte
	for i := lo; i < hi; i++ {
		b = append(b, byte(i), ' ')
	}
	return string(b)
}

// repeatTo is s repeated up to n bytes, as Autobahn's payload_len makes it.
func repeatTo(s string, n int) string { return strings.Repeat(s, n/len(s)+1)[:n] }

const hello = "Hello, world!"

// utf8Case is one of Autobahn's cases 6.5 to 6.23: Markus Kuhn's UTF-8
// decoder test, as case6_x_x.py builds it. A valid payload is echoed; an
// invalid one fails the connection with 1007.
type utf8Case struct {
	id      string
	valid   bool
	payload string
}

// Autobahn 6.4: PART1 is valid, PART2 makes the message invalid
// (U+110000, beyond Unicode), PART3 is valid on its own.
const (
	utf8Part1 = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	utf8Part2 = "\xf4\x90\x80\x80"
	utf8Part3 = "\x65\x64\x69\x74\x65\x64"
	// invalidAt12 is valid up to its 12th byte, a UTF-16 surrogate.
	invalidAt12 = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"
)

func autobahnCases() []conformanceCase {
	cases := []conformanceCase{
		// 1.1 Text messages and 1.2 binary messages of every length class,
		// echoed; 1.x.8 arrives in chops of 997 bytes.
		{"1.1.1", echoes(text("")), closes(1000), ""},
		{"1.1.2", echoes(text(strings.Repeat("*", 125))), closes(1000), ""},
		{"1.1.3", echoes(text(strings.Repeat("*", 126))), closes(1000), ""},
		{"1.1.4", echoes(text(strings.Repeat("*", 127))), closes(1000), ""},
		{"1.1.5", echoes(text(strings.Repeat("*", 128))), closes(1000), ""},
		{"1.1.6", echoes(text(strings.Repeat("*", 65535))), closes(1000), ""},
		{"1.1.7", echoes(text(strings.Repeat("*", 65536))), closes(1000), ""},
		{"1.1.8", steps(sendChopped(997, text(strings.Repeat("*", 65536))), want(text(strings.Repeat("*", 65536)))), closes(1000), ""},
		{"1.2.1", echoes(binMsg("")), closes(1000), ""},
		{"1.2.2", echoes(binMsg(strings.Repeat("\xfe", 125))), closes(1000), ""},
		{"1.2.3", echoes(binMsg(strings.Repeat("\xfe", 126))), closes(1000), ""},
		{"1.2.4", echoes(binMsg(strings.Repeat("\xfe", 127))), closes(1000), ""},
		{"1.2.5", echoes(binMsg(strings.Repeat("\xfe", 128))), closes(1000), ""},
		{"1.2.6", echoes(binMsg(strings.Repeat("\xfe", 65535))), closes(1000), ""},
		{"1.2.7", echoes(binMsg(strings.Repeat("\xfe", 65536))), closes(1000), ""},
		{"1.2.8", steps(sendChopped(997, binMsg(strings.Repeat("\xfe", 65536))), want(binMsg(strings.Repeat("\xfe", 65536)))), closes(1000), ""},

		// 2 Pings and pongs.
		{"2.1", steps(send(ping("")), want(pong(""))), closes(1000), ""},
		{"2.2", steps(send(ping(hello)), want(pong(hello))), closes(1000), ""},
		{"2.3", steps(send(ping("\x00\xff\xfe\xfd\xfc\xfb\x00\xff")), want(pong("\x00\xff\xfe\xfd\xfc\xfb\x00\xff"))), closes(1000), ""},
		{"2.4", steps(send(ping(strings.Repeat("\xfe", 125))), want(pong(strings.Repeat("\xfe", 125)))), closes(1000), ""},
		{"2.5", steps(send(ping(strings.Repeat("\xfe", 126)))), failsWith(1002), ""},
		{"2.6", steps(sendChopped(1, ping(strings.Repeat("\xfe", 125))), want(pong(strings.Repeat("\xfe", 125)))), closes(1000), ""},
		// An unsolicited pong gets nothing: the next frame is the close.
		{"2.7", steps(send(pong(""), closeWith(1000, ""))), closes(1000), ""},
		{"2.8", steps(send(pong("unsolicited pong payload"), closeWith(1000, ""))), closes(1000), ""},
		{"2.9", steps(send(pong("unsolicited pong payload"), ping("ping payload")), want(pong("ping payload"))), closes(1000), ""},
		{"2.10", tenPings(0), closes(1000), ""},
		{"2.11", tenPings(1), closes(1000), ""},

		// 3 Reserved bits: the connection fails at the frame that sets
		// one, after echoing what came before it. The pong for the ping
		// behind that frame must not come.
		{"3.1", steps(send(text(hello).withRSV(1))), failsWith(1002), ""},
		{"3.2", steps(send(text(hello), text(hello).withRSV(2), ping("")), want(text(hello))), failsWith(1002), ""},
		{"3.3", steps(sendSync(text(hello), text(hello).withRSV(3), ping("")), want(text(hello))), failsWith(1002), ""},
		{"3.4", steps(sendChopped(1, text(hello), text(hello).withRSV(4), ping("")), want(text(hello))), failsWith(1002), ""},
		{"3.5", steps(send(binMsg("\x00\xff\xfe\xfd\xfc\xfb\x00\xff").withRSV(5))), failsWith(1002), ""},
		// Autobahn describes 3.6 as a ping; the case sends a binary frame.
		{"3.6", steps(send(binMsg(hello).withRSV(6))), failsWith(1002), ""},
		{"3.7", steps(send(frame(OpClose, "").withRSV(7))), failsWith(1002), ""},

		// 4.1 Reserved data opcodes and 4.2 reserved control opcodes.
		{"4.1.1", steps(send(frame(3, ""))), failsWith(1002), ""},
		{"4.1.2", steps(send(frame(4, "reserved opcode payload"))), failsWith(1002), ""},
		{"4.1.3", steps(send(text(hello), frame(5, ""), ping("")), want(text(hello))), failsWith(1002), ""},
		{"4.1.4", steps(send(text(hello), frame(6, hello), ping("")), want(text(hello))), failsWith(1002), ""},
		{"4.1.5", steps(sendChopped(1, text(hello), frame(7, hello), ping("")), want(text(hello))), failsWith(1002), ""},
		{"4.2.1", steps(send(frame(11, ""))), failsWith(1002), ""},
		{"4.2.2", steps(send(frame(12, "reserved opcode payload"))), failsWith(1002), ""},
		{"4.2.3", steps(send(text(hello), frame(13, ""), ping("")), want(text(hello))), failsWith(1002), ""},
		{"4.2.4", steps(send(text(hello), frame(14, hello), ping("")), want(text(hello))), failsWith(1002), ""},
		{"4.2.5", steps(sendChopped(1, text(hello), frame(15, hello), ping("")), want(text(hello))), failsWith(1002), ""},

		// 5 Fragmentation.
		{"5.1", steps(send(ping("fragment1").more(), cont("fragment2"))), failsWith(1002), ""},
		{"5.2", steps(send(pong("fragment1").more(), cont("fragment2"))), failsWith(1002), ""},
		{"5.3", echoes(text("fragment1").more(), cont("fragment2")), closes(1000), ""},
		{"5.4", steps(sendSync(text("fragment1").more(), cont("fragment2")), want(text("fragment1fragment2"))), closes(1000), ""},
		{"5.5", steps(sendChopped(1, text("fragment1").more(), cont("fragment2")), want(text("fragment1fragment2"))), closes(1000), ""},
		// A ping between fragments is answered at once.
		{"5.6", steps(send(text("fragment1").more(), ping("ping payload"), cont("fragment2")), want(pong("ping payload")), want(text("fragment1fragment2"))), closes(1000), ""},
		{"5.7", steps(sendSync(text("fragment1").more(), ping("ping payload"), cont("fragment2")), want(pong("ping payload")), want(text("fragment1fragment2"))), closes(1000), ""},
		{"5.8", steps(sendChopped(1, text("fragment1").more(), ping("ping payload"), cont("fragment2")), want(pong("ping payload")), want(text("fragment1fragment2"))), closes(1000), ""},
		// Continuation frames with nothing to continue.
		{"5.9", steps(send(cont("non-continuation payload"), text(hello))), failsWith(1002), ""},
		{"5.10", steps(sendSync(cont("non-continuation payload"), text(hello))), failsWith(1002), ""},
		{"5.11", steps(sendChopped(1, cont("non-continuation payload"), text(hello))), failsWith(1002), ""},
		{"5.12", steps(send(cont("non-continuation payload").more(), text(hello))), failsWith(1002), ""},
		{"5.13", steps(sendSync(cont("non-continuation payload").more(), text(hello))), failsWith(1002), ""},
		{"5.14", steps(sendChopped(1, cont("non-continuation payload").more(), text(hello))), failsWith(1002), ""},
		{"5.15", steps(send(text("fragment1").more(), cont("fragment2"), cont("fragment3").more(), text("fragment4")), want(text("fragment1fragment2"))), failsWith(1002), ""},
		{"5.16", steps(send(
			cont("fragment1").more(), text("fragment2").more(), cont("fragment3"),
			cont("fragment1").more(), text("fragment2").more(), cont("fragment3"))), failsWith(1002), ""},
		{"5.17", steps(send(
			cont("fragment1"), text("fragment2").more(), cont("fragment3"),
			cont("fragment1"), text("fragment2").more(), cont("fragment3"))), failsWith(1002), ""},
		// A new message inside a fragmented one.
		{"5.18", steps(send(text("fragment1").more(), text("fragment2"))), failsWith(1002), ""},
		// The first pong must come before the message is complete, which
		// is what Autobahn's one-second pause between the parts tests.
		{"5.19", pingsInFragments(send), closes(1000), ""},
		{"5.20", pingsInFragments(sendSync), closes(1000), ""},

		// 6.1 Empty text fragments.
		{"6.1.1", echoes(text("")), closes(1000), ""},
		{"6.1.2", echoes(text("").more(), cont("").more(), cont("")), closes(1000), ""},
		{"6.1.3", echoes(text("").more(), cont("middle frame payload").more(), cont("")), closes(1000), ""},

		// 6.2 Valid UTF-8, whole and fragmented inside code points.
		{"6.2.1", echoes(text("Hello-µ@ßöäüàá-UTF-8!!")), closes(1000), ""},
		{"6.2.2", echoes(text("Hello-µ@ßöä").more(), cont("üàá-UTF-8!!")), closes(1000), ""},
		{"6.2.3", echoes(fragments(OpText, "Hello-µ@ßöäüàá-UTF-8!!", 1)...), closes(1000), ""},
		{"6.2.4", echoes(fragments(OpText, utf8Part1, 1)...), closes(1000), ""},

		// 6.3 Invalid UTF-8, whole and in one-byte fragments.
		{"6.3.1", steps(send(text(invalidAt12))), failsWith(1007), ""},
		{"6.3.2", steps(send(fragments(OpText, invalidAt12, 1)...)), failsWith(1007), ""},

		// 6.4 Fail fast: the connection fails at the fragment that makes
		// the message invalid, before the rest is sent.
		{"6.4.1", steps(send(text(utf8Part1).more()), probe(), send(cont(utf8Part2).more())), failsWith(1007), ""},
		{"6.4.2", steps(send(text((utf8Part1 + utf8Part2)[:12]).more()), probe(), send(cont((utf8Part1 + utf8Part2)[12:13]).more())), failsWith(1007), ""},
		{"6.4.3", steps(
			sendSplit(text(utf8Part1+utf8Part2+utf8Part3).more(), len(utf8Part1), len(utf8Part1+utf8Part2)),
			send(cont(""))), failsWith(1007),
			"NON-STRICT: the three parts are chops of one frame, and a frame's payload is checked once it has all arrived, so the connection fails after the third part, not the second"},
		{"6.4.4", steps(
			sendSplit(text(utf8Part1+utf8Part2+utf8Part3).more(), 12, 13),
			send(cont(""))), failsWith(1007),
			"NON-STRICT, as 6.4.3"},

		// 7.1 Basic close behaviour: nothing the test sends after its close
		// gets an answer.
		{"7.1.1", echoes(text("Hello World!")), closes(1000), ""},
		{"7.1.2", steps(send(closeWith(1000, ""), frame(OpClose, ""))), closes(1000), ""},
		{"7.1.3", steps(send(closeWith(1000, ""), ping(""))), closes(1000), ""},
		{"7.1.4", steps(send(closeWith(1000, ""), text("Hello World!"))), closes(1000), ""},
		{"7.1.5", steps(send(text("fragment1").more(), closeWith(1000, ""), cont("fragment2"))), closes(1000), ""},
		{"7.1.6", steps(
			send(text(repeatTo("BAsd7&jh23", 256<<10)), text("Hello World!"), closeWith(1000, ""), ping("")),
			want(text(repeatTo("BAsd7&jh23", 256<<10))), want(text("Hello World!"))), closes(1000),
			"informational in Autobahn; this implementation reads in order, so both messages come back before the close"},

		// 7.3 Close frame payload lengths.
		{"7.3.1", steps(send(frame(OpClose, ""))), closes(1005), ""},
		{"7.3.2", steps(send(frame(OpClose, "a"))), failsWith(1002), ""},
		{"7.3.3", steps(send(closeWith(1000, ""))), closes(1000), ""},
		{"7.3.4", steps(send(closeWith(1000, "Hello World!"))), closes(1000), ""},
		{"7.3.5", steps(send(closeWith(1000, strings.Repeat("*", 123)))), closes(1000), ""},
		{"7.3.6", steps(send(closeWith(1000, strings.Repeat("*", 124)))), failsWith(1002), ""},

		// 7.5 A close reason that is not UTF-8: Autobahn accepts 1002 or
		// 1007.
		{"7.5.1", steps(send(closeWith(1000, invalidAt12))), failsWith(1002), ""},
	}
	// 7.7 Valid close codes are echoed (Autobahn accepts 1000 or the code).
	for i, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		cases = append(cases, conformanceCase{fmt.Sprintf("7.7.%d", i+1), steps(send(closeWith(code, ""))), closes(code), ""})
	}
	// 7.9 Invalid close codes fail the connection.
	for i, code := range []int{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999} {
		cases = append(cases, conformanceCase{fmt.Sprintf("7.9.%d", i+1), steps(send(closeWith(code, ""))), failsWith(1002), ""})
	}
	// 7.13 Codes outside the defined range: informational in Autobahn.
	cases = append(cases,
		conformanceCase{"7.13.1", steps(send(closeWith(5000, ""))), failsWith(1002), "informational in Autobahn; 5000 is no valid code"},
		conformanceCase{"7.13.2", steps(send(closeWith(65535, ""))), failsWith(1002), "informational in Autobahn; 65535 is no valid code"},
	)
	for _, u := range utf8Cases {
		if u.valid {
			cases = append(cases, conformanceCase{u.id, echoes(text(u.payload)), closes(1000), ""})
		} else {
			cases = append(cases, conformanceCase{u.id, steps(send(text(u.payload))), failsWith(1007), ""})
		}
	}
	return cases
}

// tenPings is Autobahn 2.10 (chop 0) and 2.11 (chop 1): ten pings, each
// answered with its own pong.
func tenPings(chop int) []step {
	var pings []wsFrame
	s := []step{}
	for i := range 10 {
		p := fmt.Sprintf("payload-%d", i)
		pings = append(pings, ping(p))
		s = append(s, want(pong(p)))
	}
	return append([]step{sendChopped(chop, pings...)}, s...)
}

// pingsInFragments is Autobahn 5.19 and 5.20: pings between the fragments
// of a message, the first answered before the message is complete.
func pingsInFragments(send func(...wsFrame) step) []step {
	return steps(
		send(text("fragment1").more(), cont("fragment2").more(), ping("pongme 1!")),
		want(pong("pongme 1!")),
		send(cont("fragment3").more(), cont("fragment4").more(), ping("pongme 2!"), cont("fragment5")),
		want(pong("pongme 2!")),
		want(text("fragment1fragment2fragment3fragment4fragment5")),
	)
}

var utf8Cases = []utf8Case{
	// 6.5: Some valid UTF-8 sequences
	{"6.5.1", true, "hello\x24world"},
	{"6.5.2", true, "hello\xc2\xa2world"},
	{"6.5.3", true, "hello\xe2\x82\xacworld"},
	{"6.5.4", true, "hello\xf0\xa4\xad\xa2world"},
	{"6.5.5", true, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"},
	// 6.6: All prefixes of a valid UTF-8 string that contains multi-byte code points
	{"6.6.1", false, "\xce"},
	{"6.6.2", true, "\xce\xba"},
	{"6.6.3", false, "\xce\xba\xe1"},
	{"6.6.4", false, "\xce\xba\xe1\xbd"},
	{"6.6.5", true, "\xce\xba\xe1\xbd\xb9"},
	{"6.6.6", false, "\xce\xba\xe1\xbd\xb9\xcf"},
	{"6.6.7", true, "\xce\xba\xe1\xbd\xb9\xcf\x83"},
	{"6.6.8", false, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce"},
	{"6.6.9", true, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc"},
	{"6.6.10", false, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce"},
	{"6.6.11", true, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"},
	// 6.7: First possible sequence of a certain length
	{"6.7.1", true, "\x00"},
	{"6.7.2", true, "\xc2\x80"},
	{"6.7.3", true, "\xe0\xa0\x80"},
	{"6.7.4", true, "\xf0\x90\x80\x80"},
	// 6.8: First possible sequence length 5/6 (invalid codepoints)
	{"6.8.1", false, "\xf8\x88\x80\x80\x80"},
	{"6.8.2", false, "\xfc\x84\x80\x80\x80\x80"},
	// 6.9: Last possible sequence of a certain length
	{"6.9.1", true, "\x7f"},
	{"6.9.2", true, "\xdf\xbf"},
	{"6.9.3", true, "\xef\xbf\xbf"},
	{"6.9.4", true, "\xf4\x8f\xbf\xbf"},
	// 6.10: Last possible sequence length 4/5/6 (invalid codepoints)
	{"6.10.1", false, "\xf7\xbf\xbf\xbf"},
	{"6.10.2", false, "\xfb\xbf\xbf\xbf\xbf"},
	{"6.10.3", false, "\xfd\xbf\xbf\xbf\xbf\xbf"},
	// 6.11: Other boundary conditions
	{"6.11.1", true, "\xed\x9f\xbf"},
	{"6.11.2", true, "\xee\x80\x80"},
	{"6.11.3", true, "\xef\xbf\xbd"},
	{"6.11.4", true, "\xf4\x8f\xbf\xbf"},
	{"6.11.5", false, "\xf4\x90\x80\x80"},
	// 6.12: Unexpected continuation bytes
	{"6.12.1", false, "\x80"},
	{"6.12.2", false, "\xbf"},
	{"6.12.3", false, "\x80\xbf"},
	{"6.12.4", false, "\x80\xbf\x80"},
	{"6.12.5", false, "\x80\xbf\x80\xbf"},
	{"6.12.6", false, "\x80\xbf\x80\xbf\x80"},
	{"6.12.7", false, "\x80\xbf\x80\xbf\x80\xbf"},
	{"6.12.8", false, byteRun(0x80, 0xbf)},
	// 6.13: Lonely start characters
	{"6.13.1", false, lonelyStarts(0xc0, 0xdf)},
	{"6.13.2", false, lonelyStarts(0xe0, 0xef)},
	{"6.13.3", false, lonelyStarts(0xf0, 0xf7)},
	{"6.13.4", false, lonelyStarts(0xf8, 0xfb)},
	{"6.13.5", false, lonelyStarts(0xfc, 0xfd)},
	// 6.14: Sequences with last continuation byte missing
	{"6.14.1", false, "\xc0"},
	{"6.14.2", false, "\xe0\x80"},
	{"6.14.3", false, "\xf0\x80\x80"},
	{"6.14.4", false, "\xf8\x80\x80\x80"},
	{"6.14.5", false, "\xfc\x80\x80\x80\x80"},
	{"6.14.6", false, "\xdf"},
	{"6.14.7", false, "\xef\xbf"},
	{"6.14.8", false, "\xf7\xbf\xbf"},
	{"6.14.9", false, "\xfb\xbf\xbf\xbf"},
	{"6.14.10", false, "\xfd\xbf\xbf\xbf\xbf"},
	// 6.15: Concatenation of incomplete sequences
	{"6.15.1", false, "\xc0" + "\xe0\x80" + "\xf0\x80\x80" + "\xf8\x80\x80\x80" + "\xfc\x80\x80\x80\x80" +
		"\xdf" + "\xef\xbf" + "\xf7\xbf\xbf" + "\xfb\xbf\xbf\xbf" + "\xfd\xbf\xbf\xbf\xbf"},
	// 6.16: Impossible bytes
	{"6.16.1", false, "\xfe"},
	{"6.16.2", false, "\xff"},
	{"6.16.3", false, "\xfe\xfe\xff\xff"},
	// 6.17: Examples of an overlong ASCII character
	{"6.17.1", false, "\xc0\xaf"},
	{"6.17.2", false, "\xe0\x80\xaf"},
	{"6.17.3", false, "\xf0\x80\x80\xaf"},
	{"6.17.4", false, "\xf8\x80\x80\x80\xaf"},
	{"6.17.5", false, "\xfc\x80\x80\x80\x80\xaf"},
	// 6.18: Maximum overlong sequences
	{"6.18.1", false, "\xc1\xbf"},
	{"6.18.2", false, "\xe0\x9f\xbf"},
	{"6.18.3", false, "\xf0\x8f\xbf\xbf"},
	{"6.18.4", false, "\xf8\x87\xbf\xbf\xbf"},
	{"6.18.5", false, "\xfc\x83\xbf\xbf\xbf\xbf"},
	// 6.19: Overlong representation of the NUL character
	{"6.19.1", false, "\xc0\x80"},
	{"6.19.2", false, "\xe0\x80\x80"},
	{"6.19.3", false, "\xf0\x80\x80\x80"},
	{"6.19.4", false, "\xf8\x80\x80\x80\x80"},
	{"6.19.5", false, "\xfc\x80\x80\x80\x80\x80"},
	// 6.20: Single UTF-16 surrogates
	{"6.20.1", false, "\xed\xa0\x80"},
	{"6.20.2", false, "\xed\xad\xbf"},
	{"6.20.3", false, "\xed\xae\x80"},
	{"6.20.4", false, "\xed\xaf\xbf"},
	{"6.20.5", false, "\xed\xb0\x80"},
	{"6.20.6", false, "\xed\xbe\x80"},
	{"6.20.7", false, "\xed\xbf\xbf"},
	// 6.21: Paired UTF-16 surrogates
	{"6.21.1", false, "\xed\xa0\x80\xed\xb0\x80"},
	{"6.21.2", false, "\xed\xa0\x80\xed\xbf\xbf"},
	{"6.21.3", false, "\xed\xad\xbf\xed\xb0\x80"},
	{"6.21.4", false, "\xed\xad\xbf\xed\xbf\xbf"},
	{"6.21.5", false, "\xed\xae\x80\xed\xb0\x80"},
	{"6.21.6", false, "\xed\xae\x80\xed\xbf\xbf"},
	{"6.21.7", false, "\xed\xaf\xbf\xed\xb0\x80"},
	{"6.21.8", false, "\xed\xaf\xbf\xed\xbf\xbf"},
	// 6.22: Non-character code points (valid UTF-8)
	{"6.22.1", true, "\xef\xbf\xbe"},
	{"6.22.2", true, "\xef\xbf\xbf"},
	{"6.22.3", true, "\xf0\x9f\xbf\xbe"},
	{"6.22.4", true, "\xf0\x9f\xbf\xbf"},
	{"6.22.5", true, "\xf0\xaf\xbf\xbe"},
	{"6.22.6", true, "\xf0\xaf\xbf\xbf"},
	{"6.22.7", true, "\xf0\xbf\xbf\xbe"},
	{"6.22.8", true, "\xf0\xbf\xbf\xbf"},
	{"6.22.9", true, "\xf1\x8f\xbf\xbe"},
	{"6.22.10", true, "\xf1\x8f\xbf\xbf"},
	{"6.22.11", true, "\xf1\x9f\xbf\xbe"},
	{"6.22.12", true, "\xf1\x9f\xbf\xbf"},
	{"6.22.13", true, "\xf1\xaf\xbf\xbe"},
	{"6.22.14", true, "\xf1\xaf\xbf\xbf"},
	{"6.22.15", true, "\xf1\xbf\xbf\xbe"},
	{"6.22.16", true, "\xf1\xbf\xbf\xbf"},
	{"6.22.17", true, "\xf2\x8f\xbf\xbe"},
	{"6.22.18", true, "\xf2\x8f\xbf\xbf"},
	{"6.22.19", true, "\xf2\x9f\xbf\xbe"},
	{"6.22.20", true, "\xf2\x9f\xbf\xbf"},
	{"6.22.21", true, "\xf2\xaf\xbf\xbe"},
	{"6.22.22", true, "\xf2\xaf\xbf\xbf"},
	{"6.22.23", true, "\xf2\xbf\xbf\xbe"},
	{"6.22.24", true, "\xf2\xbf\xbf\xbf"},
	{"6.22.25", true, "\xf3\x8f\xbf\xbe"},
	{"6.22.26", true, "\xf3\x8f\xbf\xbf"},
	{"6.22.27", true, "\xf3\x9f\xbf\xbe"},
	{"6.22.28", true, "\xf3\x9f\xbf\xbf"},
	{"6.22.29", true, "\xf3\xaf\xbf\xbe"},
	{"6.22.30", true, "\xf3\xaf\xbf\xbf"},
	{"6.22.31", true, "\xf3\xbf\xbf\xbe"},
	{"6.22.32", true, "\xf3\xbf\xbf\xbf"},
	{"6.22.33", true, "\xf4\x8f\xbf\xbe"},
	{"6.22.34", true, "\xf4\x8f\xbf\xbf"},
	// 6.23: Unicode specials (i.e. replacement char)
	{"6.23.1", true, "\xef\xbf\xb9"},
	{"6.23.2", true, "\xef\xbf\xba"},
	{"6.23.3", true, "\xef\xbf\xbb"},
	{"6.23.4", true, "\xef\xbf\xbc"},
	{"6.23.5", true, "\xef\xbf\xbd"},
	{"6.23.6", true, "\xef\xbf\xbe"},
	{"6.23.7", true, "\xef\xbf\xbf"},
}

// TestAutobahnCaseCounts pins the port to Autobahn's numbering: every case
// of sections 1 to 7, each once.
func TestAutobahnCaseCounts(t *testing.T) {
	want := map[string]int{"1": 16, "2": 11, "3": 7, "4": 10, "5": 20, "6": 145, "7": 37}
	got := map[string]int{}
	seen := map[string]bool{}
	for _, tc := range autobahnCases() {
		if seen[tc.id] {
			t.Errorf("case %s twice", tc.id)
		}
		seen[tc.id] = true
		got[strings.Split(tc.id, ".")[0]]++
	}
	total := 0
	for section, n := range want {
		if got[section] != n {
			t.Errorf("section %s: %d cases, want %d", section, got[section], n)
		}
		total += got[section]
	}
	if total != 246 || len(seen) != 246 {
		t.Errorf("%d cases, want 246", len(seen))
	}
}

// TestAutobahnConformance runs every case against the server and the
// client.
func TestAutobahnConformance(t *testing.T) {
	for _, role := range []string{"server", "client"} {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			for _, tc := range autobahnCases() {
				t.Run(tc.id, func(t *testing.T) {
					t.Parallel()
					var p *rawPeer
					var impl <-chan echoResult
					if role == "server" {
						p, impl = rawClientOfAccept(t)
					} else {
						p, impl = rawServerOfDial(t)
					}
					tc.run(t, p, impl)
				})
			}
		})
	}
}

// echoResult is how the implementation's echo loop ended.
type echoResult struct {
	c   *Conn
	err error
}

// echoUntilError answers every message with itself, as Autobahn's
// testee does.
func echoUntilError(c *Conn) error {
	for {
		op, msg, err := c.ReadMessage(1 << 20)
		if err != nil {
			return err
		}
		if err := c.WriteMessage(op, msg); err != nil {
			return err
		}
	}
}

// rawClientOfAccept starts a server that accepts and echoes, and connects
// a raw client to it.
func rawClientOfAccept(t *testing.T) (*rawPeer, <-chan echoResult) {
	t.Helper()
	impl := make(chan echoResult, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, nil)
		if err != nil {
			impl <- echoResult{err: err}
			return
		}
		impl <- echoResult{c, echoUntilError(c)}
	}))
	t.Cleanup(srv.Close)
	conn, br, _ := rawUpgrade(t, srv.URL, nil)
	return newRawPeer(t, conn, br, true), impl
}

// rawServerOfDial starts a raw server, and a client that dials it and
// echoes.
func rawServerOfDial(t *testing.T) (*rawPeer, <-chan echoResult) {
	t.Helper()
	c, p := rawServer(t)
	impl := make(chan echoResult, 1)
	go func() { impl <- echoResult{c, echoUntilError(c)} }()
	return p, impl
}

// rawServer starts a raw server and dials it with Dial: it returns the
// client's Conn, closed when the test ends, and the server's end, which
// reads the client's frames with a masking of its own and writes frames
// as the test builds them.
func rawServer(t *testing.T) (*Conn, *rawPeer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	type dialed struct {
		c   *Conn
		err error
	}
	dials := make(chan dialed, 1)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := Dial(ctx, &http.Client{Transport: tr}, "ws://"+ln.Addr().String()+"/", nil, nil)
		dials <- dialed{c, err}
	}()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("Sec-WebSocket-Extensions") != "" {
		t.Errorf("the client offered extensions: %q", req.Header.Get("Sec-WebSocket-Extensions"))
	}
	fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acceptKey(req.Header.Get("Sec-WebSocket-Key")))
	d := <-dials
	if d.err != nil {
		t.Fatal(d.err)
	}
	t.Cleanup(func() { d.c.CloseNow() })
	return d.c, newRawPeer(t, conn, br, false)
}

// rawPeer is the test's end of a connection: it writes frames as they come
// (masked if it is the client) and reads the implementation's, checking
// that they are masked if and only if they come from a client.
type rawPeer struct {
	conn   net.Conn
	client bool
	rng    *rand.Rand
	werr   error        // the first write error, for the report
	frames chan wsFrame // closed when reading ends
	end    error        // why reading ended; set before frames is closed
}

func newRawPeer(t *testing.T, conn net.Conn, br *bufio.Reader, client bool) *rawPeer {
	p := &rawPeer{conn: conn, client: client, rng: newTestRand(), frames: make(chan wsFrame, 16)}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer close(p.frames)
		for {
			f, err := readWireFrame(br, !client)
			if err != nil {
				p.end = err
				return
			}
			select {
			case p.frames <- f:
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); conn.Close(); <-done })
	return p
}

// newTestRand returns a source of masking keys; any key will do.
func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// readWireFrame reads one frame from the implementation.
func readWireFrame(br *bufio.Reader, masked bool) (wsFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return wsFrame{}, err
	}
	f := wsFrame{fin: h[0]&0x80 != 0, rsv: h[0] >> 4 & 7, op: h[0] & 0x0F}
	if f.rsv != 0 {
		return f, fmt.Errorf("frame with RSV %d", f.rsv)
	}
	if m := h[1]&0x80 != 0; m != masked {
		return f, fmt.Errorf("frame masked %v, want %v", m, masked)
	}
	n := uint64(h[1] & 0x7F)
	var ext [8]byte
	switch n {
	case 126:
		if _, err := io.ReadFull(br, ext[:2]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 1<<24 {
		return f, fmt.Errorf("frame of %d bytes", n)
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(br, key[:]); err != nil {
			return f, err
		}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(br, f.payload); err != nil {
		return f, err
	}
	for i := range f.payload {
		f.payload[i] ^= key[i%4]
	}
	return f, nil
}

// encode returns f's bytes on the wire and the length of its header.
func (p *rawPeer) encode(f wsFrame) ([]byte, int) {
	b0 := f.op | f.rsv<<4
	if f.fin {
		b0 |= 0x80
	}
	b := appendHeader(nil, 0, false, len(f.payload), p.client)
	b[0] = b0
	if !p.client {
		return append(b, f.payload...), len(b)
	}
	key := p.rng.Uint32()
	b = binary.LittleEndian.AppendUint32(b, key)
	hdr := len(b)
	b = append(b, f.payload...)
	for i := range f.payload {
		b[hdr+i] ^= byte(key >> (8 * (i % 4)))
	}
	return b, hdr
}

// write writes b, remembering the first error: after the implementation
// has failed the connection, writes may fail, and that is no error.
func (p *rawPeer) write(b []byte) {
	if _, err := p.conn.Write(b); err != nil && p.werr == nil {
		p.werr = err
	}
}

func (p *rawPeer) send(s step) {
	var all []byte
	for _, f := range s.frames {
		b, hdr := p.encode(f)
		switch {
		case s.sync:
			p.write(b)
		case s.cuts != nil:
			last := 0
			for _, cut := range s.cuts {
				p.write(b[last : hdr+cut])
				last = hdr + cut
			}
			p.write(b[last:])
		default:
			all = append(all, b...)
		}
	}
	for s.chop > 0 && len(all) > 0 {
		n := min(s.chop, len(all))
		p.write(all[:n])
		all = all[n:]
	}
	if len(all) > 0 {
		p.write(all)
	}
}

// next returns the implementation's next message (its fragments joined) or
// control frame; false when the connection has ended.
func (p *rawPeer) next() (wsFrame, bool) {
	f, ok := <-p.frames
	for ok && !f.fin && (f.op == OpText || f.op == OpBinary) {
		c, more := <-p.frames
		if !more || c.op != OpContinuation {
			return wsFrame{op: 0xFF, payload: []byte(fmt.Sprintf("fragment followed by %s", describe(c)))}, true
		}
		f.payload = append(f.payload, c.payload...)
		f.fin = c.fin
	}
	return f, ok
}

func describe(f wsFrame) string {
	p := f.payload
	if len(p) > 40 {
		p = p[:40]
	}
	return fmt.Sprintf("frame op %#x fin %v, %d bytes %q", f.op, f.fin, len(f.payload), p)
}

func (tc conformanceCase) run(t *testing.T, p *rawPeer, impl <-chan echoResult) {
	t.Helper()
	if tc.note != "" {
		t.Log(tc.note)
	}
	scriptCloses := false
	for _, s := range tc.script {
		if len(s.frames) > 0 {
			p.send(s)
		}
		for _, f := range s.frames {
			scriptCloses = scriptCloses || f.op == OpClose
		}
		if s.want == nil {
			continue
		}
		got, ok := p.next()
		if !ok {
			t.Fatalf("connection ended (%v; our writes: %v), want %s", p.end, p.werr, describe(*s.want))
		}
		if got.op != s.want.op || !bytes.Equal(got.payload, s.want.payload) {
			t.Fatalf("got %s, want %s", describe(got), describe(*s.want))
		}
	}
	// The close the test sends, and the code the implementation reports
	// for it.
	sent := 0
	if !tc.end.fails {
		if !scriptCloses {
			b, _ := p.encode(closeWith(1000, ""))
			p.write(b)
		}
		sent = tc.end.code
	}
	got, ok := p.next()
	if !ok {
		t.Fatalf("connection ended (%v; our writes: %v), want a close frame with %d", p.end, p.werr, tc.end.code)
	}
	code := StatusNoStatus
	if len(got.payload) >= 2 {
		code = int(binary.BigEndian.Uint16(got.payload))
	}
	if got.op != OpClose || code != tc.end.code {
		t.Fatalf("got %s, want a close frame with %d", describe(got), tc.end.code)
	}
	// Nothing follows the close frame, and the implementation closes the
	// connection itself (RFC 6455 section 7.1.1: the server first).
	if f, ok := p.next(); ok {
		t.Fatalf("%s after the close frame", describe(f))
	}
	if !errors.Is(p.end, io.EOF) && !errors.Is(p.end, syscall.ECONNRESET) {
		t.Fatalf("after the close frame: %v, want the connection closed", p.end)
	}

	var res echoResult
	select {
	case res = <-impl:
	case <-time.After(10 * time.Second):
		t.Fatal("the implementation's read did not return")
	}
	if res.c != nil {
		t.Cleanup(func() { res.c.CloseNow() })
	}
	var ce *CloseError
	switch {
	case tc.end.fails && tc.end.code == StatusInvalidFramePayloadData:
		if !errors.Is(res.err, ErrInvalidUTF8) {
			t.Errorf("implementation's read: %v, want ErrInvalidUTF8", res.err)
		}
	case tc.end.fails:
		if !errors.Is(res.err, ErrProtocol) {
			t.Errorf("implementation's read: %v, want ErrProtocol", res.err)
		}
	case !errors.As(res.err, &ce) || ce.Code != sent:
		t.Errorf("implementation's read: %v, want a CloseError with %d", res.err, sent)
	}
}
