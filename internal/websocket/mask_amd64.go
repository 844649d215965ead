package websocket

// maskCopy is maskCopyGeneric with the bulk of the work done 64 bytes at a
// time in SSE2 registers, which every amd64 processor has: on a tunnel's
// upload path masking is the agent's largest cost after the kernel's.
func maskCopy(dst, src []byte, key uint32) {
	n := len(src) &^ 63
	if n > 0 {
		dst = dst[:len(src)]
		maskCopySSE2(&dst[0], &src[0], n, uint64(key)|uint64(key)<<32)
	}
	// Whole 64-byte blocks keep the key's phase.
	maskCopyGeneric(dst[n:], src[n:], key)
}

// maskCopySSE2 XORs n bytes (a multiple of 64) of src with the repeated
// key into dst.
//
//go:noescape
func maskCopySSE2(dst, src *byte, n int, key uint64)
