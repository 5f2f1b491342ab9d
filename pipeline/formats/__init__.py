"""The one owner of each on-disk format: every reader and writer of these files goes through here, and
each reader validates what it reads and names the file and field when it is wrong."""
