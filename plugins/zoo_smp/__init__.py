"""zoo_smp: a zoo plugin package (registered through the zoo.plugins entry point)."""
