"""This machine's Docker engine and the images runner hosts start from."""
