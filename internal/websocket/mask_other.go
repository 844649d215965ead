//go:build !amd64

package websocket

// maskCopy copies src to dst XORed with the masking key; see
// maskCopyGeneric.
func maskCopy(dst, src []byte, key uint32) { maskCopyGeneric(dst, src, key) }
