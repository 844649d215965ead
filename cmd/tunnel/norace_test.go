//go:build !race

package main

// raceEnabled says the tests were built with -race, so that a binary they
// build is too, and comes from the same build cache.
const raceEnabled = false
