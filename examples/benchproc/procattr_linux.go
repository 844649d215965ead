package main

import "syscall"

// procAttr makes a child process die with benchproc: the kernel kills it
// when benchproc exits, however it exits.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
