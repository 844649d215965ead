//go:build !race

package tunnel_test

// raceEnabled says the tests were built with -race, whose detector allows
// at most 8,128 goroutines and makes each operation dearer: the load
// tests scale down.
const raceEnabled = false
