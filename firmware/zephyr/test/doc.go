// Package zephyrtest provisions the provisioning group's Zephyr module
// (firmware/zephyr) built for native_sim with the station, as a factory
// line would provision a board running it. The package holds tests only;
// they need the native_sim executable named by ZEROTOUCH_ZEPHYR_EXE and
// skip without it (firmware/zephyr/README.md says how to build it).
package zephyrtest
