"""Writes src/humpback/demo/seed.jsonl: 40 seed pairs written for this project."""

import json
from pathlib import Path

PAIRS = [
    (
        "How do I keep fresh basil from wilting?",
        "Treat basil like cut flowers rather than like other herbs. Trim the ends of the stems, stand the bunch in a glass with a few centimetres of water, and keep it on the counter away from direct sun. Loosely cover the leaves with a plastic bag if your kitchen is dry. Avoid the refrigerator: temperatures below about 10 °C turn the leaves black within a day or two. Change the water every couple of days and pinch off any leaves that start to darken. Kept this way, basil usually stays fresh for about a week.",
    ),
    (
        "Explain what a mortgage is in simple terms.",
        "A mortgage is a loan used to buy a home, where the home itself serves as security for the loan. The lender pays most of the purchase price up front, and you repay that amount plus interest in monthly instalments, usually over 15 to 30 years. If you stop making payments, the lender has the right to take the property and sell it to recover its money; this is called foreclosure. The key numbers to compare between mortgages are the interest rate, whether it is fixed or variable, the length of the loan, and any fees charged for setting it up.",
    ),
    (
        "Write a short, polite email asking my manager for a day off next Friday.",
        "Subject: Request for a day off on Friday\n\nHi Sam,\n\nI would like to request a day of annual leave next Friday, the 14th. My current tasks are on track: the quarterly report will be finished by Thursday, and Priya has agreed to cover any urgent client emails while I am away.\n\nPlease let me know if that day works for the team, or if another date would be better.\n\nThank you,\nAlex",
    ),
    (
        "What is the difference between weather and climate?",
        "Weather describes the state of the atmosphere at a particular place and time: today's temperature, rain, wind and cloud cover. It changes from hour to hour and day to day. Climate is the long-term pattern of weather in a region, usually averaged over 30 years or more. For example, a cold afternoon in July is weather, while the fact that July is usually the warmest month in London is climate. A simple way to remember it: weather is what you get on a given day, climate is what you expect over many years.",
    ),
    (
        "Give me three tips for writing a strong CV.",
        "1. Tailor it to the job. Read the advert carefully and make sure the skills and experience it asks for are easy to find on the first page.\n2. Show results, not just duties. Instead of 'responsible for social media', write 'grew Instagram followers from 2,000 to 15,000 in a year'. Numbers make achievements concrete.\n3. Keep it clean and short. Two pages is enough for most roles; use a simple layout, consistent dates and a readable font, and check carefully for spelling mistakes.",
    ),
    (
        "Write a Python function that checks whether a string is a palindrome.",
        'Here is a function that ignores case, spaces and punctuation:\n\n```python\ndef is_palindrome(text: str) -> bool:\n    cleaned = [c.lower() for c in text if c.isalnum()]\n    return cleaned == cleaned[::-1]\n```\n\nIt keeps only letters and digits, lowercases them, and compares the list with its reverse. For example, `is_palindrome("A man, a plan, a canal: Panama")` returns `True`, and `is_palindrome("hello")` returns `False`.',
    ),
    (
        "Why do leaves change colour in autumn?",
        "Leaves are green in summer because they are full of chlorophyll, the pigment plants use to capture sunlight. As days shorten and temperatures drop in autumn, deciduous trees stop producing chlorophyll and break down what is left to recover its nutrients. Once the green fades, other pigments that were present all along become visible: carotenoids give yellow and orange colours. Some trees, such as maples, also make new red and purple pigments called anthocyanins from sugars trapped in the leaf. Sunny days and cool nights produce the most vivid reds.",
    ),
    (
        "How long should I boil an egg for a runny yolk?",
        "For a large egg straight from the fridge, lower it gently into water that is already at a rolling boil and cook it for 6 minutes. Then move it to a bowl of cold water for a minute so it stops cooking and is easier to handle. This gives a set white and a warm, runny yolk. Add about 30 seconds for a jammy yolk, or take 30 seconds off if your eggs are medium-sized or at room temperature.",
    ),
    (
        "Summarise the main causes of the First World War.",
        "Historians usually group the causes into four long-term factors and one trigger:\n\n- Militarism: the great powers built up large armies and navies, and Britain and Germany competed in a naval arms race.\n- Alliances: Europe was split into two blocs, the Triple Entente and the Triple Alliance, so a local conflict could quickly draw in everyone.\n- Imperialism: rivalry over colonies and trade increased tension between the powers.\n- Nationalism: national pride and the ambitions of groups such as the South Slavs in Austria-Hungary destabilised the Balkans.\n\nThe trigger was the assassination of Archduke Franz Ferdinand in Sarajevo in June 1914, which led Austria-Hungary to declare war on Serbia and set the alliance system in motion.",
    ),
    (
        "What is a good beginner routine for running 5 km?",
        "A common approach is a nine-week walk-run plan with three sessions a week and a rest day between each.\n\nWeeks 1-2: alternate 1 minute of gentle running with 90 seconds of walking, for 20 minutes.\nWeeks 3-4: run 3 minutes, walk 90 seconds, repeated for 20-25 minutes.\nWeeks 5-6: build up to running 8-10 minutes at a time with short walking breaks.\nWeeks 7-9: run continuously for 25-30 minutes.\n\nStart every session with five minutes of brisk walking, run at a pace where you can still talk, and repeat a week if it felt too hard. Comfortable, well-fitting shoes matter more than any other equipment.",
    ),
    (
        "Translate 'Where is the train station?' into French, Spanish and German.",
        "- French: « Où est la gare ? »\n- Spanish: «¿Dónde está la estación de tren?»\n- German: „Wo ist der Bahnhof?“\n\nIn all three languages you can make the question more polite by starting with the local equivalent of 'excuse me': « Excusez-moi », «Disculpe» or „Entschuldigung“.",
    ),
    (
        "Explain how vaccines train the immune system.",
        "A vaccine shows the immune system a harmless version or piece of a germ, such as an inactivated virus, a protein from its surface, or instructions (mRNA) that let your cells make that protein briefly. The immune system treats it as an invader: B cells make antibodies that fit the germ's shape, and T cells learn to recognise infected cells. After the response fades, long-lived memory cells remain. If you later meet the real germ, these memory cells recognise it and respond much faster and more strongly, often stopping the infection before you become seriously ill.",
    ),
    (
        "What should I consider when choosing a laptop for university?",
        "Focus on the factors that affect daily use over three or four years:\n\n1. Weight and battery life: you will carry it around campus, so aim for under 1.6 kg and at least 8 hours of real-world battery.\n2. Memory and storage: 16 GB of RAM and a 512 GB SSD keep it responsive for several years.\n3. Course requirements: engineering or design courses may need specific software that only runs on Windows or needs a dedicated graphics card, so check with your department.\n4. Keyboard and screen: you will type long essays, so try the keyboard if you can and choose a screen of at least full-HD resolution.\n5. Warranty and repairs: a longer warranty or accidental damage cover is worth it for a machine you depend on.",
    ),
    (
        "Write a haiku about the sea.",
        "Grey waves fold and break,\nsalt wind combs the empty shore,\ngulls argue with tide.",
    ),
    (
        "How does compound interest work?",
        "With compound interest, you earn interest not only on the money you originally saved but also on the interest already added to it. Suppose you deposit 1,000 at 5% per year. After the first year you have 1,050. In the second year the 5% is calculated on 1,050, giving 1,102.50, and so on. The general formula is A = P(1 + r/n)^(nt), where P is the starting amount, r the annual rate, n the number of times interest is added per year, and t the number of years. Over long periods the growth accelerates, which is why starting to save early makes such a difference.",
    ),
    (
        "Give me a simple recipe for tomato soup.",
        "Ingredients (serves 4): 1 kg ripe tomatoes, 1 onion, 2 garlic cloves, 2 tbsp olive oil, 500 ml vegetable stock, 1 tsp sugar, salt, pepper and a few basil leaves.\n\n1. Chop the onion and garlic and soften them in the oil over a medium heat for 5 minutes.\n2. Add the roughly chopped tomatoes, sugar and stock. Bring to the boil, then simmer for 20 minutes.\n3. Blend until smooth, season with salt and pepper, and stir in torn basil.\n\nFor a richer soup, add a splash of cream just before serving; canned tomatoes work well out of season.",
    ),
    (
        "What is the difference between a virus and a bacterium?",
        "Bacteria are single-celled living organisms. They have their own machinery for making energy and proteins, and most can reproduce on their own by dividing. Many are harmless or even helpful, such as those in your gut. Viruses are much smaller and are not cells at all: they are genetic material wrapped in a protein coat, and they can only reproduce by getting inside a host cell and hijacking it. This difference matters for treatment: antibiotics can kill bacteria or stop them growing, but they have no effect on viruses, which are treated with antiviral drugs or prevented with vaccines.",
    ),
    (
        "How can I improve my sleep?",
        "Several habits make a measurable difference:\n\n- Keep a regular schedule: go to bed and get up at the same time every day, including weekends.\n- Get daylight in the morning and dim the lights in the evening; bright screens late at night delay sleepiness.\n- Avoid caffeine after early afternoon and heavy meals or alcohol close to bedtime.\n- Keep the bedroom cool, dark and quiet.\n- If you cannot sleep after about 20 minutes, get up and do something calm in dim light until you feel sleepy.\n\nIf poor sleep continues for several weeks despite these changes, or you snore loudly and feel tired during the day, talk to a doctor.",
    ),
    (
        "Write a SQL query that returns the ten customers who spent the most.",
        "Assuming an `orders` table with `customer_id` and `amount` columns and a `customers` table with `id` and `name`:\n\n```sql\nSELECT c.id, c.name, SUM(o.amount) AS total_spent\nFROM customers AS c\nJOIN orders AS o ON o.customer_id = c.id\nGROUP BY c.id, c.name\nORDER BY total_spent DESC\nLIMIT 10;\n```\n\nThe query adds up each customer's orders, sorts the totals from largest to smallest, and keeps the first ten rows. On SQL Server, use `SELECT TOP 10` instead of `LIMIT 10`.",
    ),
    (
        "What are the benefits of learning a second language?",
        "Learning a second language brings practical, mental and personal benefits. Practically, it widens job opportunities, makes travel easier and lets you use information and media from another culture directly. Mentally, studies link bilingualism with better attention control and the ability to switch between tasks, and some research suggests it may delay the onset of dementia symptoms. Personally, it helps you understand how other people see the world and often gives you a better grasp of your own language's grammar.",
    ),
    (
        "How do I remove a red wine stain from a carpet?",
        "Act quickly and avoid rubbing, which spreads the stain.\n\n1. Blot up as much wine as possible with a clean white cloth or paper towels.\n2. Pour a little cold water on the stain and blot again to dilute it.\n3. Mix one tablespoon of washing-up liquid and one tablespoon of white vinegar in two cups of warm water. Sponge this onto the stain and blot until the colour lifts.\n4. Rinse with cold water and blot dry.\n\nFor an old or stubborn stain, a paste of baking soda and water left to dry and then vacuumed up can help. Test any cleaner on a hidden corner first.",
    ),
    (
        "Explain the rules of chess castling.",
        "Castling is a special move of the king and a rook, made in a single turn. The king moves two squares towards the rook, and the rook jumps to the square the king has just crossed. It is allowed only if all of these are true:\n\n- neither the king nor that rook has moved before in the game;\n- there are no pieces between the king and the rook;\n- the king is not in check;\n- the king does not pass through or land on a square attacked by an enemy piece.\n\nCastling towards the h-file rook is called kingside or short castling; towards the a-file rook, queenside or long castling.",
    ),
    (
        "What is photosynthesis?",
        "Photosynthesis is the process plants, algae and some bacteria use to turn light energy into chemical energy. In the chloroplasts of leaf cells, the pigment chlorophyll absorbs sunlight. That energy drives a series of reactions that take carbon dioxide from the air and water from the soil and combine them into glucose, releasing oxygen as a by-product. The overall equation is 6CO2 + 6H2O + light energy -> C6H12O6 + 6O2. The glucose fuels the plant's growth, and the oxygen released is what most life on Earth breathes.",
    ),
    (
        "Suggest a name and a one-line pitch for a neighbourhood tool-lending library.",
        "Name: The Borrowed Shed\n\nPitch: Why buy a drill you will use twice a year? Borrow the tools you need from your neighbours' shared shed, and give your garage its space back.",
    ),
    (
        "How do I convert Celsius to Fahrenheit?",
        "Multiply the Celsius temperature by 9/5 (or 1.8) and then add 32: F = C x 1.8 + 32. For example, 20 °C x 1.8 = 36, and 36 + 32 = 68 °F. To go the other way, subtract 32 and multiply by 5/9. A quick mental shortcut is to double the Celsius figure and add 30; it is close enough for everyday weather temperatures.",
    ),
    (
        "What causes inflation?",
        "Inflation is a general rise in prices over time, and it usually comes from one of three sources. Demand-pull inflation happens when spending in the economy grows faster than the supply of goods and services, for example after a big increase in the money supply or government spending. Cost-push inflation happens when the costs of production rise, such as energy, raw materials or wages, and firms pass them on in prices. Expectations also matter: if people expect prices to rise, workers ask for higher wages and firms raise prices in advance, which keeps inflation going. Central banks usually respond by raising interest rates to cool demand.",
    ),
    (
        "Write a short motivational message for a friend starting a new job.",
        "Congratulations on the new job! They picked you because they saw what you can bring, so trust that. The first few weeks are for learning: ask every question you have, write things down and get to know people. Nobody expects you to know everything on day one. I'm proud of you and can't wait to hear how it goes. Good luck!",
    ),
    (
        "How does a refrigerator keep food cold?",
        "A refrigerator moves heat out of its insulated cabinet rather than creating cold. A liquid called a refrigerant circulates through a closed loop. Inside the fridge, it passes through the evaporator coils at low pressure, where it evaporates and absorbs heat from the air inside. The compressor then squeezes the vapour, raising its pressure and temperature, and pushes it through the condenser coils at the back, where it releases that heat into the kitchen and turns back into a liquid. An expansion valve lowers the pressure again, and the cycle repeats. A thermostat switches the compressor on and off to hold the set temperature.",
    ),
    (
        "List some ways to reduce household plastic waste.",
        "- Carry a reusable shopping bag, water bottle and coffee cup.\n- Buy loose fruit and vegetables rather than pre-packed ones.\n- Choose bar soap and shampoo instead of liquid products in plastic bottles.\n- Buy staples such as rice, pasta and cleaning products in bulk or from refill shops.\n- Store leftovers in glass containers or beeswax wraps instead of cling film.\n- Say no to plastic cutlery and straws when ordering takeaway.\n- Repair or pass on items instead of replacing them.",
    ),
    (
        "What is the Pythagorean theorem? Give an example.",
        "The Pythagorean theorem says that in a right-angled triangle, the square of the hypotenuse (the side opposite the right angle) equals the sum of the squares of the other two sides: a² + b² = c².\n\nExample: a triangle has sides of 3 cm and 4 cm around the right angle. Then c² = 3² + 4² = 9 + 16 = 25, so the hypotenuse is c = 5 cm. The theorem is used in building, navigation and computer graphics to find distances.",
    ),
    (
        "Write a product description for a stainless steel water bottle.",
        "Keep drinks cold for 24 hours or hot for 12 with this double-walled, vacuum-insulated bottle. Made from food-grade 18/8 stainless steel, it keeps no taste of yesterday's coffee and contains no BPA. The 750 ml size fits most car cup holders and bike cages, and the leak-proof screw cap has a loop for easy carrying. A powder-coated finish gives a secure grip and stops condensation from forming on the outside. Dishwasher-safe lid; hand-wash the bottle.",
    ),
    (
        "How can I tell if an egg is still fresh?",
        "Use the float test. Gently place the egg in a bowl of cold water:\n\n- If it sinks and lies flat on its side, it is very fresh.\n- If it sinks but stands up on one end, it is older but still fine to eat, ideal for hard-boiling.\n- If it floats, throw it away.\n\nThis works because the air cell inside the egg grows as moisture evaporates through the shell. Whatever the test says, an egg that smells bad when cracked should be discarded.",
    ),
    (
        "Explain the difference between 'affect' and 'effect'.",
        "In everyday use, 'affect' is a verb and 'effect' is a noun. To affect something means to influence it: 'The weather affected our plans.' An effect is the result of a change: 'The weather had a big effect on our plans.' A memory trick is 'A for action' (affect is the action) and 'E for end result' (effect is the result). There are rarer uses too: 'effect' as a verb means to bring about ('to effect change'), and 'affect' as a noun is a psychology term for displayed emotion.",
    ),
    (
        "What are some good houseplants for low light?",
        "These plants tolerate rooms away from windows:\n\n- Snake plant (Sansevieria): very hardy, needs watering only every two to three weeks.\n- ZZ plant: glossy leaves, copes with low light and irregular watering.\n- Pothos: a trailing plant that grows quickly and shows you when it is thirsty by drooping.\n- Peace lily: one of the few flowering plants that manages in shade; keep the soil slightly moist.\n- Cast iron plant (Aspidistra): almost indestructible, as its name suggests.\n\nLow light slows growth, so water less often than you would for a plant in a sunny spot.",
    ),
    (
        "Write a function in JavaScript that returns the largest number in an array.",
        '```javascript\nfunction largest(numbers) {\n  if (numbers.length === 0) {\n    throw new Error("the array is empty");\n  }\n  return numbers.reduce((max, n) => (n > max ? n : max), numbers[0]);\n}\n```\n\n`reduce` walks through the array once, keeping the biggest value seen so far. For short arrays, `Math.max(...numbers)` does the same in one line, but spreading a very large array into arguments can exceed the engine\'s argument limit, which the loop avoids.',
    ),
    (
        "How do I prepare for a job interview?",
        "1. Research the organisation: read its website, recent news and the job description, and think about why you want this role in particular.\n2. Match your experience to the role: pick three or four examples that show the skills they ask for, and practise describing them with the STAR method (situation, task, action, result).\n3. Prepare for common questions such as 'Tell me about yourself' and 'Why are you leaving your current job?'.\n4. Prepare two or three questions of your own about the team, the work or how success is measured.\n5. Sort out the practical details the day before: route, timing, clothes, and copies of your CV.",
    ),
    (
        "What is the role of the mitochondria in a cell?",
        "Mitochondria are the organelles that produce most of a cell's usable energy. Through cellular respiration, they break down glucose and fatty acids using oxygen and store the released energy in molecules of ATP, which the cell spends to power almost everything it does, from muscle contraction to building proteins. Mitochondria also help regulate cell death, calcium levels and heat production. Unusually, they carry their own small loop of DNA, a clue that they descended from bacteria that began living inside larger cells around two billion years ago.",
    ),
    (
        "Give me a two-day itinerary for a first visit to Rome.",
        "Day 1, ancient Rome: start early at the Colosseum (book tickets online), then walk through the Roman Forum and up the Palatine Hill. After lunch in Monti, see the Pantheon and throw a coin into the Trevi Fountain. End the evening in Piazza Navona.\n\nDay 2, Vatican and Trastevere: visit the Vatican Museums and the Sistine Chapel as soon as they open, then St Peter's Basilica; climb the dome for the view if you have the energy. In the afternoon, cross into Trastevere to wander its lanes, and have dinner there.\n\nWear comfortable shoes, carry water (the public fountains are safe to drink from), and cover shoulders and knees for churches.",
    ),
    (
        "Why is the sky blue?",
        "Sunlight contains all colours of visible light. As it passes through the atmosphere, it hits gas molecules that are much smaller than the wavelength of light, and these scatter short wavelengths far more strongly than long ones; this is called Rayleigh scattering. Blue light is scattered around the whole sky, so wherever you look away from the sun, you see blue light coming towards you. Violet is scattered even more, but the sun emits less of it and our eyes are less sensitive to it, so the sky looks blue. At sunrise and sunset, light travels through much more air, most of the blue is scattered away, and the reds and oranges remain.",
    ),
    (
        "Write a thank-you note to a teacher at the end of the school year.",
        "Dear Ms Patel,\n\nThank you for a wonderful year. You made maths something I actually looked forward to, and you never made me feel silly for asking the same question twice. I especially loved the bridge-building project; I still have mine on my shelf.\n\nI will miss your class next year, but I will remember what you taught me.\n\nWith thanks,\nJamie",
    ),
]

rows = [{"instruction": i, "output": o} for i, o in PAIRS]
out = Path(__file__).resolve().parents[1] / "src" / "humpback" / "demo" / "seed.jsonl"
out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
print(len(rows), "pairs ->", out)
