// Command netplan-lab builds Linux network labs from a topology file.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
