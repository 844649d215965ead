// This Source Code Form is subject to the terms of the Mozilla Public
// License, v. 2.0. If a copy of the MPL was not distributed with this
// file, You can obtain one at https://mozilla.org/MPL/2.0/.

// Package yamux is a copy of github.com/hashicorp/yamux v0.1.2 (MPL-2.0,
// see LICENSE). Three changes matter for a tunnel's throughput: frame
// bodies are written without a copy, a blocked Read receives data straight
// into its buffer, and frames queued behind a write leave with the next
// one, in one write. Others bound what a peer can make a session hold
// (Config.MaxIncomingStreams, a queue of ping answers instead of a
// goroutine each, receive buffers within the window), and end a session's
// blocked reads and writes at once when it ends. The wire format is
// unchanged: either end interoperates with upstream yamux. FORK.md lists
// the changes file by file; fork_test.go, shutdown_test.go and
// bounds_test.go test them.
package yamux
