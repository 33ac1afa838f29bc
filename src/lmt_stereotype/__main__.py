from lmt_stereotype.cli import main

main()
