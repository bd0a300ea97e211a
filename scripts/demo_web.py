"""Writes src/humpback/demo/web/*.html: ~30 small pages of mixed quality, written for this project.

Articles, how-tos, recipes, product pages, forum threads, and pages that are mostly navigation
and ads; plus a syndicated copy, a lightly edited copy, a spam page and a page with no headers,
so that every segment filter has something to remove.
"""
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "humpback" / "demo" / "web"

NAV = """<nav class="site-nav"><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li>
<li><a href="/guides">Guides</a></li><li><a href="/shop">Shop</a></li><li><a href="/about">About us</a></li>
<li><a href="/contact">Contact</a></li><li><a href="/login">Log in</a></li></ul></nav>"""
COOKIE = """<div id="cookie-banner" class="cookie-consent"><p>We use cookies to improve your experience,
personalise ads and analyse our traffic. By clicking Accept all you consent to our use of cookies.
<a href="/privacy">Privacy policy</a> <button>Accept all</button> <button>Reject</button></p></div>"""
FOOTER = """<footer><h3>Quick Links</h3><ul><li><a href="/terms">Terms of use</a></li><li><a href="/privacy">Privacy</a></li>
<li><a href="/cookies">Cookie settings</a></li><li><a href="/careers">Careers</a></li><li><a href="/advertise">Advertise with us</a></li></ul>
<h3>Newsletter</h3><p>Sign up for our weekly newsletter and never miss a story. <a href="/subscribe">Subscribe</a></p>
<p>&copy; 2024 Example Media Ltd. All rights reserved.</p></footer>"""
SIDEBAR = """<aside class="sidebar"><h3>Advertisement</h3><p><a href="/ad">Save 50% on premium plans today!</a></p>
<h3>Trending now</h3><ul><li><a href="/a">10 celebrities who changed careers</a></li><li><a href="/b">You won't believe this kitchen hack</a></li>
<li><a href="/c">The best deals of the week</a></li></ul></aside>"""


def html(title, body, boilerplate=True):
    chrome = (NAV + COOKIE) if boilerplate else ""
    tail = (SIDEBAR + FOOTER) if boilerplate else ""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n"
            f"<body>{chrome}\n<main><article>\n{body}\n</article></main>\n{tail}</body></html>\n")


def section(level, header, *blocks):
    parts = [f"<h{level}>{header}</h{level}>"]
    for b in blocks:
        if isinstance(b, list):
            parts.append("<ul>" + "".join(f"<li>{i}</li>" for i in b) + "</ul>")
        elif b.startswith("<"):
            parts.append(b)
        else:
            parts.append(f"<p>{b}</p>")
    return "\n".join(parts)


PAGES = {}

PAGES["repot-houseplant.html"] = ("How to repot a houseplant", [
    section(1, "How to repot a houseplant"),
    section(2, "Signs your plant needs a bigger pot",
        "Most houseplants need repotting every one to two years, when their roots have filled the container. The clearest sign is roots growing out of the drainage holes or circling tightly around the inside of the pot. Other signs are water running straight through the pot without soaking in, soil drying out within a day or two of watering, and growth that has slowed during spring and summer even though the plant gets enough light.",
        "The best time to repot is early spring, just as the plant starts its growing season. It will recover quickly and fill the new space with fresh roots. Avoid repotting a plant that is flowering or one you have just brought home, since it is already adjusting to new conditions."),
    section(2, "Step by step",
        ["Choose a pot only 2 to 5 cm wider than the current one, with a drainage hole.",
         "Water the plant a day before, so the root ball holds together and slides out easily.",
         "Tip the pot on its side, support the base of the stems, and ease the plant out. Tap or squeeze plastic pots to loosen them.",
         "Gently tease apart circling roots with your fingers and trim any that are black, mushy or smell bad.",
         "Put a layer of fresh potting mix in the new pot so the top of the root ball will sit about 2 cm below the rim.",
         "Set the plant in the centre, fill around it with mix, and firm lightly without packing it down.",
         "Water thoroughly until water drains out, and keep the plant out of direct sun for a week while it settles."]),
    section(2, "Share this article", "Share on Facebook | Share on X | Email"),
])

PAGES["electricity-bill.html"] = ("Understanding your electricity bill", [
    section(1, "Understanding your electricity bill"),
    section(2, "What the standing charge and unit rate mean",
        "Almost every electricity bill is built from two prices. The standing charge is a fixed daily amount you pay for being connected to the grid, whether or not you use any power; it covers the cost of maintaining the network and meters. The unit rate is the price you pay for each kilowatt-hour (kWh) of electricity you actually use. One kilowatt-hour is the energy a 1,000-watt appliance uses in one hour, such as a small electric heater running for an hour or a kettle boiling about ten times.",
        "To check a bill, multiply the number of kWh used in the billing period by the unit rate, then add the standing charge multiplied by the number of days. Taxes are added on top. If your bill is marked as estimated, the supplier has guessed your usage: submitting an actual meter reading gives you an accurate bill and stops you from paying too much or building up a debt."),
    section(2, "How to cut the amount you use",
        "The largest users in most homes are heating, hot water, tumble dryers and older fridges and freezers. Lowering the thermostat by one degree, washing clothes at 30 degrees, drying laundry outside when possible and defrosting the freezer regularly all make a noticeable difference over a year. Appliances left on standby also add up: switching televisions, games consoles and chargers off at the wall can save a small but steady amount. Finally, compare tariffs once a year, because staying on a default tariff is often the most expensive option."),
])

PAGES["credit-score.html"] = ("What is a credit score?", [
    section(1, "What is a credit score and how is it calculated?",
        "A credit score is a number that lenders use to estimate how likely you are to repay borrowed money on time. It is calculated by credit reference agencies from the information in your credit report: your history of loans, credit cards, mobile phone contracts and utility accounts. The exact formula is private and differs between agencies, but the same factors matter everywhere.",
        "Your payment history carries the most weight: missed or late payments lower the score and stay on your report for several years. The share of your available credit that you are using also matters; keeping credit card balances below about a third of their limits helps. A long history of accounts managed well counts in your favour, while applying for lots of new credit in a short time counts against you, because each application leaves a hard search on your file. Being registered to vote at your address also helps agencies confirm your identity."),
    section(2, "How to improve it",
        "Pay every bill on time, ideally by direct debit so you never forget. Reduce outstanding balances, avoid unnecessary applications, and check your report for mistakes at least once a year; all agencies let you correct errors for free. Improvements take time, usually several months, because the score reflects your behaviour over a period rather than a single action."),
])

PAGES["banana-bread.html"] = ("The best banana bread", [
    section(1, "The best banana bread"),
    section(2, "Ingredients",
        ["3 very ripe bananas, mashed", "75 g melted butter", "150 g light brown sugar", "1 large egg, beaten",
         "1 tsp vanilla extract", "1 tsp bicarbonate of soda", "a pinch of salt", "190 g plain flour"]),
    section(2, "Method",
        "Heat the oven to 175 °C (155 °C fan) and line a 900 g loaf tin with baking paper. In a large bowl, mash the bananas with a fork until almost smooth, then stir in the melted butter. Mix in the sugar, the beaten egg and the vanilla. Sprinkle the bicarbonate of soda and salt over the mixture and stir them in, then add the flour and fold it in gently until no dry streaks remain; overmixing at this point makes the loaf tough.",
        "Pour the batter into the tin and bake for 55 to 65 minutes, until a skewer pushed into the centre comes out clean. If the top browns too quickly, cover it loosely with foil for the last 15 minutes. Leave the loaf in the tin for ten minutes, then lift it out onto a wire rack to cool completely before slicing. Wrapped well, it keeps for three days at room temperature, and it freezes well in slices."),
    section(2, "Recipe notes",
        "The riper the bananas, the sweeter and more flavourful the bread: skins should be heavily speckled or even black. You can add 100 g of chopped walnuts or chocolate chips with the flour."),
])

PAGES["lisbon-trip.html"] = ("Our week in Lisbon", [
    section(1, "Our week in Lisbon (and why I cried at a custard tart)"),
    section(2, "Getting there and first impressions",
        "So we finally did it! After three years of talking about it, my husband and I booked the cheapest flights we could find and spent a whole week in Lisbon. I have to be honest, the first day was a bit of a disaster. Our Airbnb host forgot to leave the key, it was pouring with rain, and I had packed nothing but sandals. But by the evening we were sitting in a tiny bar in Alfama with a glass of green wine, listening to someone singing fado through an open window, and I remember thinking that this was exactly what I had dreamed of.",
        "If you have been following the blog for a while, you know I am obsessed with pastries, so of course our first proper stop the next morning was Belém. I will not lie, I cried a little at the first bite of a warm pastel de nata. Let me know in the comments which bakery you think makes the best ones, because I tried six and I still cannot decide! Don't forget to follow me on Instagram for the full story of our trip, and pin this post for later."),
    section(2, "Where we ate",
        "We mostly ate in small family-run places in the old neighbourhoods. My favourite was a tiny tasca near our apartment where the owner's mother cooked grilled sardines every day. We went back three times! Prices were lower than we expected, usually around 12 euros each for a main course with wine and bread. Next week I'll share our full budget breakdown, so make sure you are subscribed."),
])

PAGES["forum-laptop-fan.html"] = ("Laptop fan very loud - Tech Help Forum", [
    section(1, "Laptop fan very loud after update??"),
    section(2, "Thread: Laptop fan very loud after update??",
        "<div class='post'><p><b>gamerdude99</b> wrote: Hi all, since the update last week my laptop fan is going crazy even when I just have the browser open. It never did this before. Anyone else? Its a 2 year old model. Thanks in advance.</p></div>",
        "<div class='post'><p><b>techhelper_sue</b> wrote: Same thing happened to me lol. Check task manager, for me it was the search indexer running in the background after the update, it calmed down after a day or so. Also maybe clean the vents, mine were full of dust.</p></div>",
        "<div class='post'><p><b>gamerdude99</b> wrote: thanks I'll check. how do I clean the vents without opening it?</p></div>",
        "<div class='post'><p><b>oldtimer</b> wrote: Compressed air, short bursts, hold the fan still with a toothpick so it doesn't overspin. Worked on my last three machines. Also check the power plan isn't set to max performance, the update reset mine. Good luck and let us know!</p></div>",
        "<div class='post'><p><b>gamerdude99</b> wrote: it was the indexer + a chrome extension. all good now, marking as solved. thanks everyone!!</p></div>"),
    section(3, "Reply to this thread", "You must be logged in to reply."),
])

PAGES["product-headphones.html"] = ("AuraSound X200 Wireless Headphones | Shop", [
    section(1, "AuraSound X200 Wireless Noise-Cancelling Headphones"),
    section(2, "Product details",
        "BUY NOW and get FREE next-day delivery! The AuraSound X200 brings studio-quality sound wherever you go. With our award-winning adaptive noise cancellation, you can block out the world and lose yourself in your music. Enjoy up to 40 hours of battery life on a single charge, and get 5 hours of playback from just 10 minutes of charging. Soft memory-foam ear cushions keep you comfortable all day, and the foldable design slips easily into the included travel case.",
        "Limited time offer: was 199.99, now only 129.99! Add to basket today and join over 50,000 happy customers. Rated 4.8 out of 5 stars. Compatible with all Bluetooth devices. Use code SAVE10 at checkout for an extra 10% off. Offer ends Sunday at midnight. Hurry, only a few left in stock! Click here to compare with other models in our range and see why reviewers call it the best value headphones of the year."),
    section(2, "Customer reviews", "Great sound!!! - Mike, 5 stars", "Arrived quickly - Jen, 4 stars"),
])

PAGES["nav-only-portal.html"] = ("City Portal - Home", [
    section(1, "Welcome to the City Portal"),
    section(2, "Quick links", ["<a href='/bins'>Bin collection days</a>", "<a href='/tax'>Pay council tax</a>", "<a href='/parking'>Parking permits</a>", "<a href='/libraries'>Libraries</a>", "<a href='/schools'>Schools</a>"]),
    section(2, "FORUM", "Join the discussion in our community forum."),
    section(2, "Latest news", ["<a href='/n1'>Road closures this weekend</a>", "<a href='/n2'>New recycling centre opens</a>", "<a href='/n3'>Library opening hours change</a>"]),
    section(2, "Advertisement", "Your advert could be here. Contact our sales team."),
    section(2, "Newsletter sign-up", "Get council news straight to your inbox."),
])

PAGES["sourdough-starter.html"] = ("How to make a sourdough starter", [
    section(1, "How to make a sourdough starter from scratch"),
    section(2, "What you need and how it works",
        "A sourdough starter is a mixture of flour and water in which wild yeasts and lactic acid bacteria grow. The yeasts make the gas that raises the bread, and the bacteria produce the acids that give sourdough its tangy flavour and help it keep. All you need is flour, water, a clean jar of about one litre, a spoon and a kitchen scale. Wholemeal or rye flour gives the fastest start because it carries more of the microbes and nutrients they feed on; you can switch to white bread flour once the starter is active.",
        "Use water at room temperature. If your tap water is heavily chlorinated, leave it in an open jug for a few hours or use filtered water. Keep the jar somewhere warm, ideally 24 to 26 °C, because cold slows everything down."),
    section(2, "A seven-day schedule",
        "Day 1: mix 50 g of wholemeal flour with 50 g of water into a thick paste, cover loosely and leave it. Day 2: you may see nothing; that is normal. Add another 50 g of flour and 50 g of water and stir. Days 3 to 6: each day, discard all but 50 g of the mixture, then feed it with 50 g of flour and 50 g of water. Discarding keeps the starter from growing huge and keeps the food-to-microbe ratio high. Around day 4 it may smell strongly or rise and then collapse; keep feeding regularly and it settles down.",
        "The starter is ready when it reliably doubles in size within four to eight hours of a feed, has a domed, bubbly surface and smells pleasantly sour, like yoghurt. Drop a teaspoon into water: if it floats, it is full of gas and ready to bake with. Once established, store it in the fridge and feed it once a week."),
])

# A syndicated copy: the same article with two words changed and a credit line (a near-duplicate).
PAGES["sourdough-starter-syndicated.html"] = ("How to make a sourdough starter - Food Digest", [
    "\n".join(PAGES["sourdough-starter.html"][1])
    .replace("of a feed,", "of a feeding,")
    .replace("Once established, store it", "Once established, keep it")
    .replace("once a week.</p>", "once a week. This article first appeared on our partner site.</p>"),
])

PAGES["password-security.html"] = ("Creating strong passwords", [
    section(1, "How to create and manage strong passwords"),
    section(2, "What makes a password strong",
        "Length matters more than complexity. Attackers guess passwords with software that tries billions of combinations, starting with common words, leaked passwords and predictable substitutions such as replacing 'a' with '@'. Every extra character multiplies the number of possibilities, so a passphrase of four or five unrelated random words, such as 'orbit-candle-maple-fjord', is both stronger and easier to remember than a short string like 'P@ssw0rd1'. Aim for at least 14 characters.",
        "The most important rule is never to reuse a password. When one website is breached, criminals try the leaked email and password combinations on hundreds of other sites, a technique called credential stuffing. A unique password for every account means one breach stays one breach."),
    section(2, "Password managers and two-factor authentication",
        "Nobody can remember dozens of unique passphrases, which is why security experts recommend a password manager. It generates a random password for each site, stores them in an encrypted vault and fills them in for you, so you only need to remember one strong master passphrase. Reputable managers encrypt the vault on your device, so the company itself cannot read your passwords.",
        "Turn on two-factor authentication wherever it is offered, starting with your email, banking and social media accounts. With it, a stolen password alone is not enough to log in: the attacker would also need the code from your authenticator app or security key. Authenticator apps and hardware keys are safer than codes sent by text message, which can be intercepted through SIM-swap fraud."),
])

PAGES["spam-seo.html"] = ("Best cheap flights cheap flights deals", [
    section(1, "Cheap flights best deals"),
    section(2, "Find cheap flights today",
        "Find cheap flights today with the best cheap flight deals. Our cheap flights are the best cheap flights online. Book cheap flights now and save on cheap flights. Cheap flights to London, cheap flights to Paris, cheap flights to New York. Find cheap flights today with the best cheap flight deals. Our cheap flights are the best cheap flights online. Book cheap flights now and save on cheap flights. Cheap flights to London, cheap flights to Paris, cheap flights to New York. Find cheap flights today with the best cheap flight deals. Our cheap flights are the best cheap flights online. Book cheap flights now and save on cheap flights. Cheap flights to Rome, cheap flights to Madrid, cheap flights to Berlin. Find cheap flights today with the best cheap flight deals. Our cheap flights are the best cheap flights online. Book cheap flights now and save on cheap flights. Cheap flights to London, cheap flights to Paris, cheap flights to New York. Find cheap flights today with the best cheap flight deals."),
])

PAGES["history-printing-press.html"] = ("The printing press", [
    section(1, "How the printing press changed Europe"),
    section(2, "Gutenberg's invention",
        "Around 1440 in Mainz, the goldsmith Johannes Gutenberg combined several existing technologies into a system for printing books quickly and cheaply. His key innovation was a hand mould for casting large numbers of identical metal letters, or movable type, from an alloy of lead, tin and antimony that melted at a low temperature and hardened quickly. He paired it with an oil-based ink that stuck to metal and a screw press adapted from the presses used to make wine and paper. Type could be arranged into pages, printed hundreds of times and then reused for the next job.",
        "The first major book printed this way, the Gutenberg Bible, was finished around 1455. About 180 copies were made, a task that would have taken scribes many years by hand."),
    section(2, "The consequences",
        "Printing spread astonishingly fast: by 1500, presses were operating in more than 250 European cities and had produced millions of books. Prices fell, and reading was no longer limited to clergy and the wealthy. Printed texts were identical from copy to copy, which allowed scholars in different cities to refer to the same page and built the foundations for modern science, where results could be shared and checked. The press also transformed religion and politics: Martin Luther's writings circulated in hundreds of thousands of copies in the 1520s, spreading the Reformation far faster than earlier reform movements. Standardised printed texts even helped fix the spelling and grammar of national languages."),
])

PAGES["no-headers.html"] = ("Untitled page", [
    "<div><p>This page has no headings at all. It is just a long run of paragraphs that a site put together without any structure. The paper's segmentation starts every segment at a header, so a page like this one cannot be segmented and is set aside as a reject with its reason. The text goes on for a while to make sure it is not simply empty: it talks about the weather, the price of bread, and the way the local bus timetable changed in the spring, none of which is organised under a heading of any kind.</p></div>",
])

PAGES["news-library-funding.html"] = ("Council approves new library funding", [
    section(1, "Council approves funding to keep branch libraries open"),
    section(2, "What was decided",
        "The city council voted on Tuesday evening to approve an extra 1.2 million in funding over the next three years to keep all nine branch libraries open, reversing a proposal made in the spring to close three of them. The decision followed a public consultation that received more than 6,000 responses, the largest in the council's history, with nine in ten respondents opposing the closures.",
        "Under the new plan, opening hours at the smaller branches will be extended on Saturdays, and each library will host a weekly homework club for secondary school pupils. The money will come partly from the sale of an unused office building and partly from a grant for digital skills training, which will fund free computer classes for older residents. Council officers said the libraries were visited more than 900,000 times last year and that demand for printing, internet access and help with online forms had grown sharply."),
    section(2, "Reactions",
        "Campaigners who had organised read-ins at the threatened branches welcomed the vote but warned that funding was only guaranteed until 2027. Opposition councillors questioned whether the sale of the office building would raise the sums expected."),
    section(2, "Related articles", ["<a href='/x'>Budget cuts: what they mean for you</a>", "<a href='/y'>Five libraries with stunning architecture</a>"]),
])

PAGES["ALLCAPS-promo.html"] = ("MEGA SALE", [
    section(1, "MEGA SUMMER SALE NOW ON"),
    section(2, "EVERYTHING MUST GO",
        "Our biggest sale of the year is here, with discounts across every department of the store. Garden furniture, barbecues, paddling pools, parasols, outdoor lighting and hundreds of other summer essentials are reduced by up to seventy percent, and new lines are being added every single day until the sale ends. Visit any of our forty stores nationwide or shop online with free delivery on all orders over fifty pounds. Members of our loyalty club get early access to the best deals and an extra ten percent off selected items, so sign up at the till or on our website before you shop. Terms and conditions apply to all offers, which are available while stocks last. Prices in store may differ from those online. Please see the store for full details of the offers available and the exclusions that apply to each of them this summer."),
])

PAGES["first-aid-burns.html"] = ("First aid for burns", [
    section(1, "First aid for minor burns"),
    section(2, "What to do straight away",
        "Cool the burn as soon as possible under cool or lukewarm running water for 20 minutes. This is the single most effective step: it stops the burning process, reduces pain and lowers the risk of scarring, and it still helps if started up to three hours after the injury. Do not use ice, iced water, butter, toothpaste or creams, which can damage the skin further or trap heat.",
        "While cooling, remove any clothing or jewellery near the burnt area, unless it is stuck to the skin. Keep the person warm, with a blanket over unaffected areas, because cooling a large area can lower body temperature. Once cooled, cover the burn loosely with cling film laid lengthways or a clean plastic bag; this protects it from infection without sticking. Paracetamol or ibuprofen can relieve pain."),
    section(2, "When to get medical help",
        "Go to an emergency department for burns larger than the person's hand, burns on the face, hands, feet or genitals, any burn that looks white, charred or leathery, chemical and electrical burns, and any burn to a child under five, a pregnant person or someone elderly. Seek advice too if blisters become very painful, smell bad or the person develops a fever, which can signal infection."),
])

PAGES["compost.html"] = ("Composting at home", [
    section(1, "Composting at home: a beginner's guide"),
    section(2, "Greens and browns",
        "Compost is made by microbes breaking down organic material, and they work best with a mix of two types of ingredient. 'Greens' are moist, nitrogen-rich materials: fruit and vegetable scraps, coffee grounds, tea leaves and fresh grass cuttings. 'Browns' are dry, carbon-rich materials: cardboard, paper, dry leaves, straw and woody prunings. A good rule of thumb is roughly equal volumes of each. Too many greens make a wet, smelly heap; too many browns make one that barely breaks down.",
        "Leave out meat, fish, dairy and cooked food, which attract rats, as well as diseased plants and the roots of perennial weeds. Tear cardboard and chop large stems into small pieces, since smaller pieces rot faster."),
    section(2, "Looking after the heap",
        "Put your bin or heap on bare soil in a sheltered spot, so worms and other soil creatures can move in. Add material in layers, mixing greens and browns, and keep the heap as damp as a wrung-out sponge: water it in dry weather and cover it when it rains. Turning the heap with a fork every few weeks lets air in, which speeds decomposition and prevents bad smells. Depending on the mix and the season, compost is ready in six months to two years, when it is dark, crumbly and smells of earth. Sieve out any lumps and put them back in the bin to rot down further."),
])

# A copy of one section of the compost guide under the same title (an exact duplicate segment).
PAGES["compost-copy.html"] = ("Composting at home - Garden Weekly", [
    PAGES["compost.html"][1][0], PAGES["compost.html"][1][2],
])

PAGES["python-venv.html"] = ("Python virtual environments explained", [
    section(1, "Python virtual environments explained"),
    section(2, "Why use a virtual environment?",
        "A virtual environment is a self-contained directory with its own Python interpreter and its own set of installed packages. Without one, every project on your machine shares the same global packages, so upgrading a library for one project can break another that depends on an older version. Virtual environments keep each project's dependencies separate and make it easy to record exactly what a project needs, so that a colleague or a server can reproduce the same setup.",
        "Python ships with the venv module, so you do not need to install anything extra. Tools such as Poetry, pipenv and uv build on the same idea and add dependency locking."),
    section(2, "Creating and using one",
        "<pre>python -m venv .venv\nsource .venv/bin/activate      # on Windows: .venv\\Scripts\\activate\npip install requests\npip freeze > requirements.txt</pre>",
        "The first command creates the environment in a folder called .venv inside your project. Activating it changes your shell so that python and pip refer to the environment's copies; your prompt usually shows its name. Packages you install now go into .venv only. Saving them with pip freeze lets anyone recreate the environment with pip install -r requirements.txt. Run deactivate to return to the global Python, and add .venv to your .gitignore, since the folder can always be rebuilt and should not be committed."),
])

PAGES["coffee-brewing.html"] = ("Brewing better coffee at home", [
    section(1, "Five ways to brew better coffee at home"),
    section(2, "Start with the grind and the ratio",
        "The two changes that improve home coffee most are grinding fresh and weighing what you use. Ground coffee loses much of its aroma within half an hour, so grinding just before brewing makes a bigger difference than almost any equipment upgrade. A burr grinder produces evenly sized particles, which extract evenly; blade grinders produce a mix of dust and chunks that taste bitter and sour at the same time.",
        "For filter coffee and cafetières, a good starting ratio is 60 grams of coffee per litre of water, or about 15 grams for a large mug. Use water just off the boil, around 92 to 96 °C. If the coffee tastes sour or thin, grind finer or brew a little longer; if it tastes bitter or harsh, grind coarser or shorten the brew. Change one thing at a time so you can tell what made the difference."),
    section(2, "Our favourite coffee subscription",
        "This post contains affiliate links. We love the beans from our partner roastery, and readers get 20% off their first bag with our code!"),
])

PAGES["decluttering-blog.html"] = ("My decluttering journey", [
    section(1, "How I finally decluttered my flat (and kept it that way)"),
    section(2, "Where it all started",
        "Last January I looked around my one-bedroom flat and felt completely overwhelmed. There were clothes I hadn't worn in years, three broken umbrellas, a bread maker I had used exactly once, and a drawer full of cables for phones I no longer owned. I had read all the books and watched all the videos, but nothing stuck. So I decided to try something different: one small area every weekend, no exceptions. Honestly, I was sceptical, but six months later I can say it changed my life, and in this post I want to share exactly how I did it.",
        "The first weekend I only did the cutlery drawer. It took twenty minutes and I felt ridiculous, but it was the first time I finished a decluttering project. The next weekend I did the bathroom cabinet, then my wardrobe over two weekends. What surprised me most was how much lighter I felt. Have you tried decluttering? Tell me about it in the comments below, and if you liked this post, please share it with a friend who needs a push! Next month I'll show you my capsule wardrobe, so subscribe so you don't miss it."),
])

PAGES["tax-return-guide.html"] = ("How to file a self-assessment tax return", [
    section(1, "How to file a self-assessment tax return"),
    section(2, "Before you start",
        "Gather your records before you open the online form, so you can complete it in one sitting. You will need your taxpayer reference number, your National Insurance number, and details of all your income for the tax year: payslips or a P60 from any employment, invoices and receipts if you are self-employed, bank statements showing interest, and records of rental income, dividends or pension payments. If you are self-employed, also collect evidence of allowable expenses, such as equipment, travel for work, and a share of phone and home costs used for business.",
        "Register for online filing well before the deadline: the activation code is sent by post and can take up to ten days to arrive."),
    section(2, "Completing and paying",
        "The online form asks a series of questions and only shows the sections that apply to you. Enter your income and expenses carefully, since the system calculates the tax due as you go. Before submitting, check the calculation and download a copy for your records. The deadline for online returns is 31 January after the end of the tax year, and the tax must be paid by the same date; filing even a day late brings an automatic penalty. If you owe more than a set amount, you may also have to make payments on account towards next year's bill, which are due in January and July. If you cannot pay in full, contact the tax office early to set up a payment plan rather than waiting for penalties to build up."),
])

PAGES["forum-sourdough-help.html"] = ("Sourdough not rising?? - Baking Forum", [
    section(1, "Sourdough not rising?? help pls"),
    section(2, "Original post",
        "<div class='post'><p>breadnewbie wrote: my loaf came out flat as a pancake AGAIN. starter is 2 weeks old, bubbly i think?? followed a youtube recipe exactly. what am i doing wrong. attaching pic (sorry its blurry).</p></div>",
        "<div class='post'><p>crumbshot wrote: Two weeks is young, mine took a month to get strong. Does it double after feeding? If not, thats your problem. Also what temp is your kitchen, if its cold your bulk ferment needs way longer than the video says. I go by how the dough looks not the clock.</p></div>",
        "<div class='post'><p>breadnewbie wrote: kitchen is cold yeah maybe 17 degrees. ill try leaving it longer</p></div>",
        "<div class='post'><p>mod_kate wrote: Moving this to the Troubleshooting board. Please search before posting, there are loads of threads about this! See the pinned FAQ. Thread locked.</p></div>"),
])

PAGES["mostly-ads.html"] = ("Top 10 gadgets", [
    section(1, "Top 10 gadgets you need"),
    section(2, "Advertisement", "<a href='/ad1'>Click here to win a free phone</a>"),
    section(2, "1. Smart mug", "Keeps your coffee warm. <a href='/buy1'>Buy now</a>"),
    section(2, "2. Phone projector", "Turn your phone into a cinema. <a href='/buy2'>Buy now</a>"),
    section(2, "Sponsored content", ["<a href='/s1'>Doctors hate this trick</a>", "<a href='/s2'>Local mum makes thousands from home</a>"]),
    section(2, "You may also like", ["<a href='/m1'>Top 10 kitchen gadgets</a>", "<a href='/m2'>Top 10 travel gadgets</a>"]),
])

PAGES["bike-puncture.html"] = ("How to fix a bike puncture", [
    section(1, "How to fix a bike puncture"),
    section(2, "Find the hole",
        "First remove the wheel: shift to the smallest rear sprocket if it is the back wheel, open the brake quick-release if your bike has rim brakes, and undo the axle. Let out any remaining air, then push the tyre bead towards the centre of the rim all the way round to loosen it. Hook two tyre levers under the bead about ten centimetres apart and lever one side of the tyre off the rim, then pull out the inner tube. Pump some air into the tube and listen or feel for escaping air; holding it close to your cheek or passing it through a bowl of water makes small holes easier to find.",
        "Before repairing anything, run your fingers carefully round the inside of the tyre to find what caused the puncture, such as a thorn or a sliver of glass, and remove it. Otherwise the new or repaired tube will go flat straight away."),
    section(2, "Patch and refit",
        "Roughen the area around the hole with the sandpaper from your repair kit, spread a thin layer of rubber solution a little larger than the patch, and wait until it is dry to the touch, usually a few minutes. Press the patch on firmly from the middle outwards and hold it for a minute. Put a little air in the tube so it holds its shape, tuck it into the tyre starting at the valve, and work the bead back onto the rim with your thumbs, avoiding levers if you can, since they can pinch the tube. Check that the tube is not trapped under the bead, inflate to the pressure printed on the tyre wall, and refit the wheel."),
])

PAGES["recipe-life-story.html"] = ("Grandma's lentil soup", [
    section(1, "Grandma's lentil soup"),
    section(2, "A bowl full of memories",
        "Every winter when I was little, my grandmother made a huge pot of lentil soup that simmered all afternoon on her old stove. I can still remember the smell filling the hallway as I came home from school, and the way she would let me stir it while standing on a wooden chair. She never wrote the recipe down, of course, and it took me years of phone calls and experiments to get it right after she passed away. This soup is more than dinner to me; it is a little piece of her, and I am so happy to finally share it with all of you. Before we get to the recipe, a quick thank you to everyone who left such kind messages on my last post!",
        "The secret, as Grandma always said, is patience and a good splash of lemon at the end. Scroll down for the recipe card, and don't forget to rate it and tag me in your photos!"),
    section(2, "Recipe",
        "Soften 1 chopped onion, 2 carrots and 2 celery sticks in olive oil for 10 minutes. Add 2 garlic cloves, 1 tsp cumin and 250 g rinsed brown lentils, then 1.5 litres of stock. Simmer for 40 minutes until the lentils are soft, season, and finish with the juice of half a lemon."),
])

PAGES["solar-panels.html"] = ("Are solar panels worth it?", [
    section(1, "Are home solar panels worth it?"),
    section(2, "How much they can save",
        "Whether solar panels pay off depends on four things: how much sun your roof gets, how much electricity you use during the day, what you pay for electricity, and what you are paid for power you export to the grid. A typical home system of around 4 kilowatts costs several thousand to install and produces roughly 3,400 kWh a year in a sunny southern location, less further north or on an east or west facing roof. The savings come mostly from the electricity you use yourself as it is generated, which replaces power you would otherwise buy at the full retail price.",
        "Households that are at home during the day, or that can run dishwashers, washing machines and electric car chargers while the sun is out, use more of their own power and save more. Exported electricity usually earns much less than the price of buying it, so a battery that stores midday power for the evening can improve the return, though it adds to the cost. Most systems pay for themselves in 8 to 14 years and keep working for 25 years or more, with the inverter typically replaced once along the way."),
])

PAGES["event-listing.html"] = ("Events this weekend", [
    section(1, "Events this weekend"),
    section(2, "Saturday", ["Farmers' market, 9am-1pm, Market Square", "Kids' craft morning, 10am, Central Library", "Jazz in the park, 6pm"]),
    section(2, "Sunday", ["Charity fun run, 10am, Riverside", "Vintage fair, 11am-4pm, Town Hall"]),
    section(2, "Share this page", "Facebook | X | WhatsApp"),
])

PAGES["empty.html"] = ("", [""])


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.html"):
        old.unlink()
    for name, (title, blocks) in PAGES.items():
        body = "\n".join(blocks)
        boilerplate = name not in ("empty.html", "no-headers.html")
        text = html(title, body, boilerplate) if body.strip() else ""
        (OUT / name).write_text(text, encoding="utf-8")
    # A page saved in Windows-1252 with non-UTF-8 bytes: the HTML parser must cope.
    latin = html("Café culture", section(1, "Café culture in Vienna") + "\n" + section(2, "A short history of the Viennese coffee house",
        "Vienna's coffee houses date back to the late seventeenth century, and by the nineteenth they had become the city's public living rooms, places where writers, artists and students could sit for hours over a single coffee and a glass of water, reading newspapers supplied by the café. A proper Wiener Kaffeehaus still has marble tables, bentwood chairs, and waiters in black jackets who never rush a guest. The menu usually lists a dozen kinds of coffee: a Melange is similar to a cappuccino, an Einspänner is a strong black coffee topped with whipped cream and served in a glass, and a Verlängerter is an espresso lengthened with hot water.",
        "In 2011 UNESCO added Viennese coffee house culture to Austria's list of intangible cultural heritage, describing the coffee house as a place where time and space are consumed, but only the coffee is found on the bill. Many of the famous houses, such as Café Central and Café Sperl, are still open and serve Sachertorte and apple strudel alongside the coffee."))
    (OUT / "cafe-culture-cp1252.html").write_bytes(latin.replace('charset="utf-8"', 'charset="windows-1252"').encode("cp1252"))
    print(len(list(OUT.glob("*.html"))), "pages ->", OUT)


if __name__ == "__main__":
    main()
