//go:build !linux

package main

import "syscall"

// procAttr has no parent-death signal to ask for off Linux; benchproc
// measures from /proc, which is Linux's, and says so when it is missing.
func procAttr() *syscall.SysProcAttr { return nil }
