//go:build !unix

package main

// alive reports whether process pid runs: here, a listed board is taken
// as running while its port is there.
func alive(int) bool { return true }
