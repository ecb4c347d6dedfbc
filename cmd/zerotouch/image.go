package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"zerotouch/flasher"
	"zerotouch/internal/atomicfile"
)

func imageToolCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Make and check MCUboot images, for link image upload and the firmware: setting",
	}
	cmd.AddCommand(imageBuildCmd(g), imageShowCmd(g))
	return cmd
}

func imageBuildCmd(g *globals) *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:   "build --version 1.2.0 APP.bin IMAGE.bin",
		Short: "Wrap a firmware binary in an MCUboot image",
		Long: `Wrap a firmware binary (as the build made it, with no MCUboot header) in
an MCUboot image of the given version: the image header, the binary and a
SHA-256 TLV, which is what MCUboot's imgtool makes without a signing key.
A bootloader that checks signatures needs an image signed with its key
(imgtool sign --key KEY ...); this one is for bootloaders that check only
the hash, for the virtual boards and for tests.

IMAGE.bin is written atomically; an existing one is replaced. Exit status:
0 when written; 1 when IMAGE.bin cannot be written; 2 when the command
line is wrong, or APP.bin cannot be read, is empty or is already an
MCUboot image.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := flasher.ParseImageVersion(version)
			if err != nil {
				return usageError{fmt.Errorf("--version %q: %w", version, err)}
			}
			body, err := os.ReadFile(args[0])
			if err != nil {
				return usageError{fmt.Errorf("read the firmware: %w", err)}
			}
			if len(body) == 0 {
				return usageError{fmt.Errorf("%s is empty", args[0])}
			}
			if _, err := flasher.ParseImage(body); err == nil {
				return usageError{fmt.Errorf("%s is already an MCUboot image: upload it as it is", args[0])}
			}
			img := flasher.BuildImage(v, body)
			info, err := flasher.ParseImage(img)
			if err != nil {
				return fmt.Errorf("the image made does not check: %w", err)
			}
			if err := atomicfile.Write(args[1], img, 0o644); err != nil {
				return fmt.Errorf("write the image: %w", err)
			}
			return printImage(g, args[1], info, len(img))
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "the image's version, as 1.2.0 or 1.2.0.4 (required)")
	cmd.MarkFlagRequired("version")
	return cmd
}

func imageShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show IMAGE.bin",
		Short: "Check an MCUboot image and print its version, size and hash",
		Long: `Check an MCUboot image (its header, size and SHA-256 TLV) and print its
version, size and hash. Exit status: 0 when it checks; 1 when the file is
not a sound MCUboot image; 2 when the command line is wrong or the file
cannot be read.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := os.ReadFile(args[0])
			if err != nil {
				return usageError{fmt.Errorf("read the image: %w", err)}
			}
			info, err := flasher.ParseImage(img)
			if errors.Is(err, flasher.ErrNotImage) {
				return fmt.Errorf("%s: %w: make one with zerotouch image build", args[0], err)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return printImage(g, args[0], info, len(img))
		},
	}
}

// printImage prints what an image is.
func printImage(g *globals, file string, info flasher.ImageInfo, size int) error {
	if g.json {
		return printResult(g, map[string]any{"file": file, "version": info.Version.String(), "size": size, "bodySize": info.Size,
			"sha256": fmt.Sprintf("%x", info.Hash)})
	}
	fmt.Fprintf(g.stdout, "%s: MCUboot image, version %s, %d bytes (firmware %d bytes), sha256 %x\n", file, info.Version, size, info.Size, info.Hash)
	return nil
}
