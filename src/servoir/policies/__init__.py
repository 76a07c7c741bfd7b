"""Decision policies by family. They import only servoir's base layer, never the simulator."""
