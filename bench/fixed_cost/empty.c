/* The smallest C program: what an allocator costs a process that barely allocates. */
int main(void) {
  return 0;
}
