// Package winetest runs zerotouch's Windows build under Wine, on Linux:
// the command itself (help, a configuration with Windows paths, a CA in a
// folder with a space, whose keys are the user's alone) and the tests of
// the packages whose Windows code differs (locks, owner-only files,
// pseudo-terminals, TPM devices), through go test -exec wine-exec.
//
// The tests run when ZEROTOUCH_WINE=1, and then fail if Debian's wine64
// or mingw-w64 is missing. wine-exec, beside this file, is the -exec
// program; it makes the Wine prefix, with testdata/bcryptprimitives.c
// built into its system32 (Wine 8 lacks that DLL, which Go's Windows
// runtime needs).
package winetest
